// The rank table file of HcclCommInitClusterInfo: which device and server each rank of a group is on.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moe_ep::cann {

struct RankTable {
  struct Rank {
    int32_t device = -1;  // "device_id"
    std::string server;   // its server's "server_id"
  };
  std::vector<Rank> ranks;  // by "rank_id": 0 .. size - 1, each once
  size_t servers = 0;       // entries of "server_list"
};

/// Reads a rank table (JSON: {"server_list": [{"server_id": S, "device": [{"device_id": D, "rank_id": R}, ...]},
/// ...], ...}; ids as strings or numbers, other members ignored). Throws Error (kInvalidParam) naming the file
/// and what is wrong: unreadable, not JSON (with the byte offset), a member missing or of another type, an id that
/// is not a non-negative integer, rank ids that are not 0 .. n - 1 each once, more than kMaxGroupRanks ranks, two
/// ranks on one device of a server; the message begins with `api`, the
/// entry point that reads the table.
RankTable ReadRankTable(const std::string& path, const char* api);

}  // namespace moe_ep::cann
