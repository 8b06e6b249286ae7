// The process launcher: fork/exec per rank, prefixed output forwarding, exit status, clean-up.
#include "moe-ep/launch.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <span>
#include <string>
#include <utility>

#include "base/entropy.h"
#include "moe-ep/options.h"
#include "transport/shm/shm_window.h"

namespace moe_ep::tools {
namespace {

volatile sig_atomic_t g_forward_signal = 0;
int g_interrupted_by = 0;  // the signal a Launch forwarded to its ranks

void RememberSignal(int sig) { g_forward_signal = sig; }

// The signals a launcher hands on to its children (a closed terminal's SIGHUP too), unless its caller ignores them
// (nohup, a background job), as the children then do.
constexpr int kForwardedSignals[] = {SIGINT, SIGTERM, SIGHUP};
constexpr size_t kForwarded = std::size(kForwardedSignals);

// While it lives, the forwarded signals are caught for handing on to the children, and SIGCHLD is the default (an
// ignored one, inherited from `trap '' CHLD`, has the kernel reap them, and waitpid would never see one end); the
// caller's handlers come back when it goes (a bench starts many jobs).
class HandingOnSignals {
 public:
  HandingOnSignals() {
    g_forward_signal = 0;
    struct sigaction action {};
    action.sa_handler = RememberSignal;
    for (size_t i = 0; i < kForwarded; ++i) {
      sigaction(kForwardedSignals[i], nullptr, &callers_[i]);
      if (callers_[i].sa_handler != SIG_IGN) sigaction(kForwardedSignals[i], &action, nullptr);
    }
    struct sigaction default_child {};
    default_child.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &default_child, &callers_child_);
  }
  ~HandingOnSignals() {
    for (size_t i = 0; i < kForwarded; ++i) sigaction(kForwardedSignals[i], &callers_[i], nullptr);
    sigaction(SIGCHLD, &callers_child_, nullptr);
    if (g_forward_signal != 0 && forwarded_ == 0) forwarded_ = g_forward_signal;  // as the last child ended
    if (forwarded_ != 0) g_interrupted_by = forwarded_;
  }
  HandingOnSignals(const HandingOnSignals&) = delete;
  HandingOnSignals& operator=(const HandingOnSignals&) = delete;

  // Forks with the forwarded signals blocked: the child drops the handler before it takes them, so one sent to it
  // before exec still ends it (caught by RememberSignal there, it would be lost). In the child they are as the
  // caller had them (an ignored one stays ignored).
  pid_t Fork() const {
    sigset_t stop_signals, previous;
    sigemptyset(&stop_signals);
    for (int sig : kForwardedSignals) sigaddset(&stop_signals, sig);
    sigprocmask(SIG_BLOCK, &stop_signals, &previous);
    const pid_t pid = fork();
    if (pid == 0) {
      for (size_t i = 0; i < kForwarded; ++i) {
        signal(kForwardedSignals[i], callers_[i].sa_handler == SIG_IGN ? SIG_IGN : SIG_DFL);
      }
    }
    sigprocmask(SIG_SETMASK, &previous, nullptr);
    return pid;
  }

  // Hands a signal caught since the last call on to `pids` (those > 0): the first as it came; a later one (a
  // repeated Ctrl-C) as SIGKILL where `kill_at_second`, for children that did not end by the first (a launcher that
  // ends its own children, as mpirun does, gets it as it came).
  void HandOn(std::span<const pid_t> pids, bool kill_at_second) {
    if (g_forward_signal == 0) return;
    const bool kill_them = forwarded_ != 0 && kill_at_second;
    const bool any = std::any_of(pids.begin(), pids.end(), [](pid_t pid) { return pid > 0; });
    if (kill_them && any) std::fprintf(stderr, "moe-ep: a second signal: killing what is left of the job\n");
    for (pid_t pid : pids) {
      if (pid > 0) kill(pid, kill_them ? SIGKILL : g_forward_signal);
    }
    if (forwarded_ == 0) forwarded_ = g_forward_signal;
    g_forward_signal = 0;
  }
  // The first signal handed on, or 0.
  int forwarded() const { return forwarded_; }

 private:
  struct sigaction callers_[kForwarded] {};
  struct sigaction callers_child_ {};
  int forwarded_ = 0;
};

// One output stream of one rank: bytes are cut into lines, each written with the rank's prefix.
struct Stream {
  int fd = -1;
  FILE* out = nullptr;
  std::string prefix;
  std::string partial;

  // Forwards what the pipe holds; false when it held nothing yet (a non-blocking pipe).
  bool Drain() {
    char buffer[65536];
    const ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n <= 0) {
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) return errno != EAGAIN;
      End();
      return true;
    }
    partial.append(buffer, static_cast<size_t>(n));
    size_t start = 0;
    for (size_t nl; (nl = partial.find('\n', start)) != std::string::npos; start = nl + 1) {
      std::fprintf(out, "%s%.*s\n", prefix.c_str(), static_cast<int>(nl - start), partial.data() + start);
    }
    partial.erase(0, start);
    std::fflush(out);
    return true;
  }
  // Once its rank has ended: forwards what the pipe holds now, without waiting for the end of the stream, which a
  // process the rank started (and left running) may hold open, and write to, for good.
  void DrainLeft() {
    if (fd < 0) return;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    int held = 0;
    if (ioctl(fd, FIONREAD, &held) != 0) held = 0;
    for (int reads = held / 65536 + 1; fd >= 0 && reads > 0; --reads) {
      if (!Drain()) break;
    }
    if (fd >= 0) End();
  }
  // Forwards a last line without its newline, and closes the pipe.
  void End() {
    if (!partial.empty()) std::fprintf(out, "%s%s\n", prefix.c_str(), partial.c_str());
    partial.clear();
    close(fd);
    fd = -1;
  }
};

// `files`: the open-files limit the launcher was started with (it may have raised its own for its pipes).
[[noreturn]] void ExecRank(const LaunchOptions& o, int rank, const std::string& rendezvous, int out_fd, int err_fd,
                           pid_t launcher, const rlimit& files) {
  setrlimit(RLIMIT_NOFILE, &files);                 // the rank's is the caller's, not the launcher's
  prctl(PR_SET_PDEATHSIG, SIGKILL);                 // a rank never outlives its launcher,
  if (getppid() != launcher) _exit(128 + SIGKILL);  // not even one that ended before the line above
  // A pipe end that is already the standard stream (the launcher started without one) keeps its close-on-exec flag
  // through dup2: clear it.
  for (const auto& [fd, standard] : {std::pair{out_fd, STDOUT_FILENO}, std::pair{err_fd, STDERR_FILENO}}) {
    if (fd == standard) {
      fcntl(fd, F_SETFD, 0);
    } else {
      dup2(fd, standard);
    }
  }
  setenv("MOE_EP_RANK", std::to_string(rank).c_str(), 1);
  setenv("MOE_EP_WORLD_SIZE", std::to_string(o.ranks).c_str(), 1);
  setenv("MOE_EP_RENDEZVOUS", rendezvous.c_str(), 1);
  std::vector<char*> argv;
  for (const auto& arg : o.command) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  execvp(argv[0], argv.data());
  std::fprintf(stderr, "moe-ep launch: cannot run '%s': %s\n", argv[0], std::strerror(errno));
  _exit(127);
}

// The launcher holds two pipes per rank: raises the soft limit on open files toward the hard one when they would not
// fit; "" when they fit, else why not.
std::string DescriptorProblem(int ranks) {
  const rlim_t needed = 2 * static_cast<rlim_t>(ranks) + 32;  // and stdin, stdout, stderr, a few of the library's
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return "";  // pipe2 will say what is wrong
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < needed) {
    limit.rlim_cur = limit.rlim_max == RLIM_INFINITY ? needed : std::min(needed, limit.rlim_max);
    setrlimit(RLIMIT_NOFILE, &limit);
    getrlimit(RLIMIT_NOFILE, &limit);
  }
  if (limit.rlim_cur == RLIM_INFINITY || limit.rlim_cur >= needed) return "";
  return "moe-ep launch: -n " + std::to_string(ranks) + " violates rule: the launcher keeps 2 pipes per rank open, " +
         std::to_string(needed) + " files in all, and this process may open " + std::to_string(limit.rlim_cur) +
         " (ulimit -n; its hard limit " +
         (limit.rlim_max == RLIM_INFINITY ? std::string("unlimited") : std::to_string(limit.rlim_max)) + ")";
}

}  // namespace

int Launch(const LaunchOptions& o) {
  // Raised (DescriptorProblem) while the ranks run; the caller's and the ranks' limit is the one it had.
  struct CallerFiles {
    rlimit limit{};
    CallerFiles() { getrlimit(RLIMIT_NOFILE, &limit); }
    ~CallerFiles() { setrlimit(RLIMIT_NOFILE, &limit); }
  } caller_files_guard;
  const rlimit& caller_files = caller_files_guard.limit;
  if (const std::string problem = DescriptorProblem(o.ranks); !problem.empty()) {
    std::fprintf(stderr, "%s\n", problem.c_str());
    return kBadUsageExitCode;
  }
  const std::string rendezvous = entropy::HexToken();
  HandingOnSignals signals;  // to the ranks while they run
  const pid_t launcher = getpid();

  std::vector<pid_t> pids(o.ranks, -1);
  std::vector<Stream> streams;
  // A rank that cannot be started ends the job: the ranks already running are killed and reaped.
  auto abandon = [&](const char* what) {
    std::perror(what);
    for (pid_t pid : pids) {
      if (pid > 0) kill(pid, SIGKILL), waitpid(pid, nullptr, 0);
    }
    for (auto& s : streams) close(s.fd);
    transport::RemoveJobSegments(rendezvous);
    return 1;
  };
  for (int rank = 0; rank < o.ranks; ++rank) {
    int out_pipe[2], err_pipe[2];
    // Close-on-exec: a rank holds no other rank's pipe (dup2 gives it its own ends without the flag).
    if (pipe2(out_pipe, O_CLOEXEC) != 0) return abandon("moe-ep launch: pipe");
    if (pipe2(err_pipe, O_CLOEXEC) != 0) {
      close(out_pipe[0]), close(out_pipe[1]);
      return abandon("moe-ep launch: pipe");
    }
    const pid_t pid = signals.Fork();
    if (pid == 0) {
      close(out_pipe[0]);
      close(err_pipe[0]);
      ExecRank(o, rank, rendezvous, out_pipe[1], err_pipe[1], launcher, caller_files);
    }
    if (pid < 0) {
      for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) close(fd);
      return abandon("moe-ep launch: fork");
    }
    pids[rank] = pid;
    close(out_pipe[1]);
    close(err_pipe[1]);
    const std::string prefix = "[rank " + std::to_string(rank) + "] ";
    streams.push_back({out_pipe[0], stdout, prefix, {}});
    streams.push_back({err_pipe[0], stderr, prefix, {}});
  }

  int first_failure = 0, running = o.ranks;
  bool ended = false;  // end_on_failure ended the others: their SIGTERM is not news
  while (running > 0) {
    signals.HandOn(pids, /*kill_at_second=*/true);
    std::vector<pollfd> fds;
    std::vector<Stream*> owners;
    for (auto& s : streams) {
      if (s.fd >= 0) {
        fds.push_back({s.fd, POLLIN, 0});
        owners.push_back(&s);
      }
    }
    if (poll(fds.data(), fds.size(), 50) > 0) {
      for (size_t i = 0; i < fds.size(); ++i) {
        if (fds[i].revents) owners[i]->Drain();
      }
    }
    int status = 0;
    for (pid_t pid; (pid = waitpid(-1, &status, WNOHANG)) > 0;) {
      for (int rank = 0; rank < o.ranks; ++rank) {
        if (pids[rank] != pid) continue;
        pids[rank] = -1;
        --running;
        const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        if (code != 0 && !ended) {
          std::fprintf(stderr, "moe-ep launch: rank %d %s %d\n", rank,
                       WIFEXITED(status) ? "exited with status" : "was killed by signal",
                       WIFEXITED(status) ? code : WTERMSIG(status));
          if (first_failure == 0) first_failure = code;
          if (o.end_on_failure && running > 0 && signals.forwarded() == 0) {  // (a forwarded one reached them all)
            std::fprintf(stderr, "moe-ep launch: ending the other %d rank(s), which would wait for it\n", running);
            for (pid_t other : pids) {
              if (other > 0) kill(other, SIGTERM);
            }
            ended = true;
          }
        }
      }
    }
  }
  signals.HandOn(pids, true);  // one that arrived as the last rank ended: nobody is left to tell
  for (auto& s : streams) s.DrainLeft();
  const int left = transport::RemoveJobSegments(rendezvous);
  if (left > 0) std::fprintf(stderr, "moe-ep launch: removed %d shared-memory segment(s) the job left behind\n", left);
  return first_failure != 0 || signals.forwarded() == 0 ? first_failure : 128 + signals.forwarded();
}

int RunProgram(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  HandingOnSignals signals;
  const pid_t parent = getpid();
  const pid_t pid = signals.Fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(128 + SIGTERM);  // it ended before the line above
    execvp(args[0], args.data());
    _exit(127);
  }
  if (pid < 0) return 127;
  int status = 0;
  for (;;) {
    const pid_t waited = waitpid(pid, &status, WNOHANG);
    if (waited == pid) break;
    if (waited < 0 && errno != EINTR) return 127;
    signals.HandOn({&pid, 1}, /*kill_at_second=*/false);  // mpirun ends its ranks at a second itself
    usleep(20 * 1000);                                    // the signal handler cuts the nap short
  }
  signals.HandOn({}, false);  // one that arrived as it ended
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int InterruptedBy() { return g_interrupted_by; }

}  // namespace moe_ep::tools
