// The baseline MoE frameworks write on CPUs today: permute, MPI_Alltoallv, sort by expert; and back for combine.
#pragma once

#include <mpi.h>

#include <bit>
#include <cstdint>
#include <span>
#include <vector>

namespace moe_ep_bench {

inline float Bf16ToFloat(uint16_t bits) { return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16); }

// Round to nearest, ties to even, as moe_ep's combine rounds its fp32 sums (NaN stays a quiet NaN).
inline uint16_t FloatToBf16(float value) {
  const uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((bits >> 16) | 0x0040u);
  const uint32_t rounding_bias = 0x7FFFu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding_bias) >> 16);
}

// Dispatch and combine of bf16 token rows written the way MoE frameworks do it over MPI: every (token, k)
// pair becomes a row of its own (a token routed to two experts of one rank travels twice), rows are
// permuted by destination expert, the per-expert counts go out with MPI_Alltoall and the rows with
// MPI_Alltoallv, and the receiver sorts them into expert-major order. Experts are spread evenly:
// expert e lives on rank e / experts_per_rank as local expert e % experts_per_rank, as in moe_ep.
//
// After Dispatch, expand_x() holds the received rows in the order of moe_ep's expandX
// (docs/semantics.md 2.2): by local expert, then by source rank, then by token. Buffers are kept between
// calls, as a framework's caching allocator would keep them.
class AlltoallvDispatcher {
 public:
  AlltoallvDispatcher(MPI_Comm comm, int num_experts, int64_t hidden);
  ~AlltoallvDispatcher();
  AlltoallvDispatcher(const AlltoallvDispatcher&) = delete;
  AlltoallvDispatcher& operator=(const AlltoallvDispatcher&) = delete;

  // [collective] Sends token row x[t] (bf16, `hidden` wide) to expert expert_ids[t * top_k + k] for every k.
  // Every id must lie in [0, num_experts).
  void Dispatch(std::span<const uint16_t> x, std::span<const int32_t> expert_ids, int top_k);

  // Rows received by the last Dispatch, row-major (received_rows() x hidden).
  std::span<const uint16_t> expand_x() const {
    return {expand_x_.data(), static_cast<size_t>(received_rows_ * hidden_)};
  }
  int64_t received_rows() const { return received_rows_; }

  // [collective] Returns the expert outputs (rows in expand_x order) to the ranks that own their tokens
  // and writes out[t] = bf16(sum over k of weights[t * top_k + k] * row(t, k)), summed in fp32 in k order
  // from +0 with the multiply and the add each rounded (the arithmetic of moe_ep's combine).
  void Combine(std::span<const uint16_t> expert_out, std::span<const float> weights, std::span<uint16_t> out);

 private:
  // Rows of the last dispatch that travel between this rank and each peer, by (peer, local expert).
  void ExchangeCounts();
  // Copies rows chunk by chunk between the source-major receive buffer and expert-major expand_x, in either
  // direction: chunk c's rows start at from_offset[c] in `from` and go to to_offset[c] in `to`.
  void CopyChunks(const uint16_t* from, const std::vector<int64_t>& from_offset, uint16_t* to,
                  const std::vector<int64_t>& to_offset) const;

  MPI_Comm comm_;
  MPI_Datatype row_type_;  // one bf16 row: counts and displacements below are in rows, which cannot overflow int
  int world_size_ = 0;
  int experts_per_rank_ = 0;
  int num_experts_ = 0;
  int64_t hidden_ = 0;

  int64_t tokens_ = 0;
  int top_k_ = 0;
  // Row i of the send buffer carries pair send_row_pair_[i] (= t * top_k + k); pair_send_row_ is the inverse.
  std::vector<int64_t> send_row_pair_, pair_send_row_;
  std::vector<int> send_rows_per_expert_;  // by global expert
  std::vector<int> recv_rows_per_chunk_;   // by (source rank, local expert): source * experts_per_rank + local
  std::vector<int64_t> chunk_offset_by_source_, chunk_offset_by_expert_;  // the same chunks in either order
  std::vector<int> send_rows_per_rank_, send_row_offsets_, recv_rows_per_rank_, recv_row_offsets_;
  int64_t received_rows_ = 0;

  std::vector<uint16_t> send_rows_;      // dispatch: permuted by destination expert
  std::vector<uint16_t> recv_rows_;      // dispatch: by source rank, then local expert
  std::vector<uint16_t> expand_x_;       // dispatch: by local expert, then source rank
  std::vector<uint16_t> returned_rows_;  // combine: expert outputs back in the send order
};

}  // namespace moe_ep_bench
