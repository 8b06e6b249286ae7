# Thread ranks for the Python suite: one thread per rank running the test's body, the first failure re-raised.
import threading


def on_threads(n, body):
    """Runs body(rank) for rank 0 .. n-1, one thread each; returns the results, re-raising the first failure."""
    results, failures = [None] * n, []

    def run(r):
        try:
            results[r] = body(r)
        except BaseException as e:  # noqa: BLE001 - re-raised below
            failures.append(e)

    threads = [threading.Thread(target=run, args=(r,)) for r in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    return results
