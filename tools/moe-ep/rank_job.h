// One rank's part of the main job: its buffers, one dispatch, one combine, and the memcpy of the same
// bytes that each is timed against (shared by the run over threads and the run over MPI processes).
#pragma once

#include <cstdint>
#include <vector>

#include "moe-ep/run_job.h"
#include "moe_ep/ops.h"
#include "verify/scenario.h"

namespace moe_ep::tools {

/// The scenario `moe-ep run` runs for these options.
verify::ScenarioSpec SpecOf(const JobOptions& o);

/// Bytes one received dispatch row carries: the token (int8 plus its fp32 scale when quantized).
int64_t DispatchRowBytes(const JobOptions& o);

double Median(std::vector<double> v);

/// Prints one line of the timings table.
void PrintRow(const char* name, double seconds, uint64_t bytes, double memcpy_seconds);

class RankJob {
 public:
  /// Rank `rank` of `group`, which receives `received_rows` rows in dispatch (from the reference).
  RankJob(const JobOptions& o, const verify::ScenarioSpec& s, const verify::ScenarioInputs& in, int rank,
          int64_t received_rows, Group& group);

  void Dispatch();
  void Combine();  // of the last Dispatch
  /// The baselines: a memcpy of the bytes this rank receives in dispatch / sends back in combine.
  void CopyDispatchBytes();
  void CopyCombineBytes();

 private:
  const JobOptions& o_;
  const verify::ScenarioSpec& s_;
  const verify::ScenarioInputs& in_;
  int rank_;
  Group& group_;
  DispatchOptions dispatch_options_;
  CombineOptions combine_options_;
  std::vector<uint8_t> expand_x_;
  std::vector<float> scales_;
  std::vector<int32_t> assist_, recv_, tp_recv_;
  std::vector<int64_t> token_nums_;
  std::vector<uint16_t> expert_out_, x_out_;
  DispatchOutputs outs_;
  DispatchHandle handle_;
  size_t copy_dispatch_bytes_ = 0, copy_combine_bytes_ = 0;
  std::vector<uint8_t> copy_src_, copy_dst_;
};

}  // namespace moe_ep::tools
