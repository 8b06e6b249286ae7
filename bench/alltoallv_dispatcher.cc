// The MPI_Alltoallv dispatcher: the baseline hosts_bench measures moe_ep against (see the header).
#include "alltoallv_dispatcher.h"

#include <cstring>
#include <stdexcept>
#include <string>

namespace moe_ep_bench {

namespace {

void CheckMpi(int status, const char* call) {
  if (status != MPI_SUCCESS) throw std::runtime_error(std::string(call) + " failed");
}

}  // namespace

AlltoallvDispatcher::AlltoallvDispatcher(MPI_Comm comm, int num_experts, int64_t hidden)
    : comm_(comm), num_experts_(num_experts), hidden_(hidden) {
  MPI_Comm_size(comm_, &world_size_);
  if (num_experts <= 0 || num_experts % world_size_ != 0) {
    throw std::invalid_argument("AlltoallvDispatcher: " + std::to_string(num_experts) +
                                " experts do not spread evenly over " + std::to_string(world_size_) + " ranks");
  }
  experts_per_rank_ = num_experts / world_size_;
  CheckMpi(MPI_Type_contiguous(static_cast<int>(hidden), MPI_UINT16_T, &row_type_), "MPI_Type_contiguous");
  CheckMpi(MPI_Type_commit(&row_type_), "MPI_Type_commit");
}

AlltoallvDispatcher::~AlltoallvDispatcher() { MPI_Type_free(&row_type_); }

void AlltoallvDispatcher::Dispatch(std::span<const uint16_t> x, std::span<const int32_t> expert_ids, int top_k) {
  top_k_ = top_k;
  tokens_ = static_cast<int64_t>(expert_ids.size()) / top_k;
  if (static_cast<int64_t>(x.size()) != tokens_ * hidden_)
    throw std::invalid_argument("Dispatch: x is not (tokens, hidden)");
  const int64_t pairs = tokens_ * top_k;

  // Permute: a counting sort of the pairs by expert, stable, so each expert's rows keep token order.
  send_rows_per_expert_.assign(num_experts_, 0);
  for (int32_t expert : expert_ids) {
    if (expert < 0 || expert >= num_experts_)
      throw std::invalid_argument("Dispatch: expert id " + std::to_string(expert));
    ++send_rows_per_expert_[expert];
  }
  std::vector<int64_t> next_row_of_expert(num_experts_, 0);
  for (int e = 1; e < num_experts_; ++e)
    next_row_of_expert[e] = next_row_of_expert[e - 1] + send_rows_per_expert_[e - 1];
  send_row_pair_.resize(pairs);
  pair_send_row_.resize(pairs);
  for (int64_t pair = 0; pair < pairs; ++pair) {
    const int64_t row = next_row_of_expert[expert_ids[pair]]++;
    send_row_pair_[row] = pair;
    pair_send_row_[pair] = row;
  }
  send_rows_.resize(pairs * hidden_);
  const size_t row_bytes = hidden_ * sizeof(uint16_t);
  for (int64_t row = 0; row < pairs; ++row) {
    std::memcpy(&send_rows_[row * hidden_], &x[(send_row_pair_[row] / top_k) * hidden_], row_bytes);
  }

  ExchangeCounts();
  recv_rows_.resize(received_rows_ * hidden_);
  CheckMpi(MPI_Alltoallv(send_rows_.data(), send_rows_per_rank_.data(), send_row_offsets_.data(), row_type_,
                         recv_rows_.data(), recv_rows_per_rank_.data(), recv_row_offsets_.data(), row_type_, comm_),
           "MPI_Alltoallv");
  expand_x_.resize(received_rows_ * hidden_);
  CopyChunks(recv_rows_.data(), chunk_offset_by_source_, expand_x_.data(), chunk_offset_by_expert_);
}

void AlltoallvDispatcher::ExchangeCounts() {
  // Sent rows are ordered by global expert, so each destination's slice is already by its local expert.
  recv_rows_per_chunk_.resize(num_experts_);
  CheckMpi(MPI_Alltoall(send_rows_per_expert_.data(), experts_per_rank_, MPI_INT, recv_rows_per_chunk_.data(),
                        experts_per_rank_, MPI_INT, comm_),
           "MPI_Alltoall");
  send_rows_per_rank_.assign(world_size_, 0);
  recv_rows_per_rank_.assign(world_size_, 0);
  send_row_offsets_.assign(world_size_, 0);
  recv_row_offsets_.assign(world_size_, 0);
  for (int rank = 0; rank < world_size_; ++rank) {
    for (int local = 0; local < experts_per_rank_; ++local) {
      send_rows_per_rank_[rank] += send_rows_per_expert_[rank * experts_per_rank_ + local];
      recv_rows_per_rank_[rank] += recv_rows_per_chunk_[rank * experts_per_rank_ + local];
    }
    if (rank > 0) {
      send_row_offsets_[rank] = send_row_offsets_[rank - 1] + send_rows_per_rank_[rank - 1];
      recv_row_offsets_[rank] = recv_row_offsets_[rank - 1] + recv_rows_per_rank_[rank - 1];
    }
  }
  received_rows_ = recv_row_offsets_[world_size_ - 1] + recv_rows_per_rank_[world_size_ - 1];

  // Where chunk (source, local expert) starts in the receive buffer (source-major) and in expand_x (expert-major).
  chunk_offset_by_source_.resize(num_experts_);
  chunk_offset_by_expert_.resize(num_experts_);
  int64_t offset = 0;
  for (int chunk = 0; chunk < num_experts_; ++chunk) {
    chunk_offset_by_source_[chunk] = offset;
    offset += recv_rows_per_chunk_[chunk];
  }
  offset = 0;
  for (int local = 0; local < experts_per_rank_; ++local) {
    for (int source = 0; source < world_size_; ++source) {
      const int chunk = source * experts_per_rank_ + local;
      chunk_offset_by_expert_[chunk] = offset;
      offset += recv_rows_per_chunk_[chunk];
    }
  }
}

void AlltoallvDispatcher::CopyChunks(const uint16_t* from, const std::vector<int64_t>& from_offset, uint16_t* to,
                                     const std::vector<int64_t>& to_offset) const {
  for (int chunk = 0; chunk < num_experts_; ++chunk) {
    if (recv_rows_per_chunk_[chunk] == 0) continue;  // a rank may receive nothing: no buffer to copy into
    std::memcpy(to + to_offset[chunk] * hidden_, from + from_offset[chunk] * hidden_,
                recv_rows_per_chunk_[chunk] * hidden_ * sizeof(uint16_t));
  }
}

void AlltoallvDispatcher::Combine(std::span<const uint16_t> expert_out, std::span<const float> weights,
                                  std::span<uint16_t> out) {
  if (static_cast<int64_t>(expert_out.size()) < received_rows_ * hidden_ ||
      static_cast<int64_t>(weights.size()) != tokens_ * top_k_ ||
      static_cast<int64_t>(out.size()) != tokens_ * hidden_) {
    throw std::invalid_argument("Combine: buffer sizes do not match the last Dispatch");
  }
  // The reverse trip: the dispatch receive buffer is free again and stages the rows by source rank.
  CopyChunks(expert_out.data(), chunk_offset_by_expert_, recv_rows_.data(), chunk_offset_by_source_);
  returned_rows_.resize(send_rows_.size());
  CheckMpi(MPI_Alltoallv(recv_rows_.data(), recv_rows_per_rank_.data(), recv_row_offsets_.data(), row_type_,
                         returned_rows_.data(), send_rows_per_rank_.data(), send_row_offsets_.data(), row_type_, comm_),
           "MPI_Alltoallv");

  std::vector<float> sum(hidden_);
  for (int64_t t = 0; t < tokens_; ++t) {
    sum.assign(hidden_, 0.0f);
    for (int k = 0; k < top_k_; ++k) {
      const int64_t pair = t * top_k_ + k;
      const uint16_t* row = &returned_rows_[pair_send_row_[pair] * hidden_];
      const float weight = weights[pair];
      for (int64_t h = 0; h < hidden_; ++h) {
        const float weighted = Bf16ToFloat(row[h]) * weight;  // rounded on its own: the build never fuses (no FMA)
        sum[h] = sum[h] + weighted;
      }
    }
    for (int64_t h = 0; h < hidden_; ++h) out[t * hidden_ + h] = FloatToBf16(sum[h]);
  }
}

}  // namespace moe_ep_bench
