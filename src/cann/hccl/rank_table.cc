// Reads a rank table: a small JSON reader (objects, arrays, strings, numbers, literals) and the table's rules.
#include "cann/hccl/rank_table.h"

#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <utility>

#include "moe_ep/error.h"
#include "moe_ep/group.h"

namespace moe_ep::cann {
namespace {

// A JSON value. Numbers keep their text: the table's ids are integers written either way.
struct Json {
  enum class Kind { kObject, kArray, kString, kNumber, kLiteral } kind = Kind::kLiteral;
  std::string text;                // string (unescaped), number or literal
  std::vector<std::string> names;  // object: member i is names[i] = items[i]
  std::vector<Json> items;         // object members' values, or array items (a vector may hold its own type)
  const Json* Member(const std::string& key) const {
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == key) return &items[i];
    }
    return nullptr;
  }
};

class Reader {
 public:
  Reader(const std::string& text, const std::string& path, const char* api) : text_(text), path_(path), api_(api) {}

  Json Document() {
    Json value = Value(0);
    Space();
    if (at_ != text_.size()) Fail("text after the JSON value");
    return value;
  }

 private:
  [[noreturn]] void Fail(const std::string& what) const {
    throw Error(ErrorCode::kInvalidParam, std::string(api_) + ": rank table '" + path_ +
                                              "' is not valid JSON: " + what + " at byte " + std::to_string(at_));
  }
  void Space() {
    while (at_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[at_]))) ++at_;
  }
  bool Take(char c) {
    Space();
    if (at_ < text_.size() && text_[at_] == c) return ++at_, true;
    return false;
  }
  void Expect(char c) {
    if (!Take(c)) Fail(std::string("'") + c + "' expected");
  }

  Json Value(int depth) {
    if (depth > 64) Fail("nesting deeper than 64");
    Space();
    if (at_ >= text_.size()) Fail("a value expected");
    Json v;
    const char c = text_[at_];
    if (c == '{') {
      ++at_;
      v.kind = Json::Kind::kObject;
      if (Take('}')) return v;
      std::set<std::string> seen;  // not Member's scan: an object of millions of names must not take hours
      do {
        Space();
        const size_t key_at = at_;
        std::string key = String();
        // JSON leaves a repeated name's meaning open (parsers differ on which one wins): a table must say one thing.
        // Named as written (escaped), at most 64 characters of it.
        if (!seen.insert(key).second) {
          const std::string written = text_.substr(key_at, at_ - key_at);
          at_ = key_at;
          Fail((written.size() > 64 ? written.substr(0, 64) + "..." : written) + " given twice in one object");
        }
        v.names.push_back(std::move(key));
        Expect(':');
        v.items.push_back(Value(depth + 1));
      } while (Take(','));
      Expect('}');
    } else if (c == '[') {
      ++at_;
      v.kind = Json::Kind::kArray;
      if (Take(']')) return v;
      do v.items.push_back(Value(depth + 1));
      while (Take(','));
      Expect(']');
    } else if (c == '"') {
      v.kind = Json::Kind::kString;
      v.text = String();
    } else if (c == '-' || std::isdigit(static_cast<unsigned char>(c))) {
      v.kind = Json::Kind::kNumber;
      v.text = Number();
    } else {
      for (const char* literal : {"true", "false", "null"}) {
        if (text_.compare(at_, std::strlen(literal), literal) == 0) {
          at_ += std::strlen(literal);
          v.text = literal;
          return v;
        }
      }
      Fail("a value expected");
    }
    return v;
  }

  // A number at at_, as JSON writes one: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?; its text.
  std::string Number() {
    const size_t begin = at_;
    const auto digits = [&] {
      const size_t from = at_;
      while (at_ < text_.size() && std::isdigit(static_cast<unsigned char>(text_[at_]))) ++at_;
      if (at_ == from) Fail("a digit expected in a number");
      return at_ - from;
    };
    if (text_[at_] == '-') ++at_;
    const size_t integer = at_;
    if (digits() > 1 && text_[integer] == '0') at_ = begin, Fail("a number with a leading zero");
    if (at_ < text_.size() && text_[at_] == '.') ++at_, digits();
    if (at_ < text_.size() && (text_[at_] == 'e' || text_[at_] == 'E')) {
      ++at_;
      if (at_ < text_.size() && (text_[at_] == '+' || text_[at_] == '-')) ++at_;
      digits();
    }
    return text_.substr(begin, at_ - begin);
  }

  // A string at at_ (its opening quote); escapes are decoded, \u of a character past ASCII reads as '?'.
  std::string String() {
    if (at_ >= text_.size() || text_[at_] != '"') Fail("a string expected");
    ++at_;
    std::string out;
    while (at_ < text_.size() && text_[at_] != '"') {
      char c = text_[at_++];
      if (static_cast<unsigned char>(c) < 0x20) --at_, Fail("a control character inside a string");
      if (c == '\\') {
        if (at_ >= text_.size()) break;
        const char e = text_[at_++];
        static const std::map<char, char> kEscapes = {{'"', '"'},  {'\\', '\\'}, {'/', '/'},  {'b', '\b'},
                                                      {'f', '\f'}, {'n', '\n'},  {'r', '\r'}, {'t', '\t'}};
        if (e == 'u') {
          if (at_ + 4 > text_.size() || text_.find_first_not_of("0123456789abcdefABCDEF", at_) < at_ + 4) {
            Fail("a \\u escape without its 4 hex digits");
          }
          const unsigned long code = std::stoul(text_.substr(at_, 4), nullptr, 16);
          at_ += 4;
          c = code < 0x80 ? static_cast<char>(code) : '?';
        } else if (const auto it = kEscapes.find(e); it != kEscapes.end()) {
          c = it->second;
        } else {
          Fail(std::string("an unknown escape \\") + e);
        }
      }
      out += c;
    }
    if (at_ >= text_.size()) Fail("a string without its closing quote");
    ++at_;
    return out;
  }

  const std::string& text_;
  const std::string& path_;
  const char* api_;  // the entry point reading the table, which its messages begin with
  size_t at_ = 0;
};

}  // namespace

RankTable ReadRankTable(const std::string& path, const char* api) {
  const auto fail = [&](const std::string& what) -> void {
    throw Error(ErrorCode::kInvalidParam, std::string(api) + ": rank table '" + path + "': " + what);
  };
  // A table's size at most (a table of kMaxGroupRanks ranks takes about 3 MiB): /dev/zero was read until memory ran
  // out. A pipe (<(make_table)) is read like a file.
  constexpr size_t kMaxTableBytes = size_t{64} << 20;
  struct stat info {};
  if (stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode)) fail("is a directory");
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    const int why = errno;  // open(2)'s, before the message is put together
    fail(std::string("cannot be read: ") + std::strerror(why));
  }
  std::string text;
  char chunk[1 << 16];
  while (file.read(chunk, sizeof(chunk)) || file.gcount() > 0) {
    text.append(chunk, static_cast<size_t>(file.gcount()));
    if (text.size() > kMaxTableBytes) fail("holds more than 64 MiB; a rank table is far smaller");
  }
  const Json document = Reader(text, path, api).Document();
  if (document.kind != Json::Kind::kObject) fail("the document must be an object");
  const Json* servers = document.Member("server_list");
  if (servers == nullptr || servers->kind != Json::Kind::kArray || servers->items.empty()) {
    fail("\"server_list\" must be a non-empty array");
  }
  // An id: a non-negative integer, as a string ("3") or a number (3).
  const auto id = [&](const Json& owner, const char* key, const std::string& where) -> int64_t {
    const Json* v = owner.Member(key);
    const bool text = v != nullptr && (v->kind == Json::Kind::kString || v->kind == Json::Kind::kNumber);
    if (!text || v->text.empty() || v->text.size() > 9 ||
        v->text.find_first_not_of("0123456789") != std::string::npos) {
      fail(where + " \"" + key + "\" must be a non-negative integer (as a string or a number)" +
           (text ? ", not '" + v->text + "'" : ""));
    }
    return std::stoll(v->text);
  };
  RankTable table;
  table.servers = servers->items.size();
  std::map<int64_t, RankTable::Rank> by_rank;
  for (size_t s = 0; s < servers->items.size(); ++s) {
    const Json& server = servers->items[s];
    const std::string where = "server_list[" + std::to_string(s) + "]";
    if (server.kind != Json::Kind::kObject) fail(where + " must be an object");
    const Json* server_id = server.Member("server_id");
    const Json* devices = server.Member("device");
    if (devices == nullptr || devices->kind != Json::Kind::kArray) fail(where + " \"device\" must be an array");
    for (size_t d = 0; d < devices->items.size(); ++d) {
      const Json& device = devices->items[d];
      const std::string at = where + ".device[" + std::to_string(d) + "]";
      if (device.kind != Json::Kind::kObject) fail(at + " must be an object");
      const int64_t rank = id(device, "rank_id", at);
      RankTable::Rank entry{static_cast<int32_t>(id(device, "device_id", at)),
                            server_id ? server_id->text : std::to_string(s)};
      if (!by_rank.emplace(rank, entry).second) fail("rank_id " + std::to_string(rank) + " appears twice");
    }
  }
  for (const auto& [rank, entry] : by_rank) {
    if (rank != static_cast<int64_t>(table.ranks.size())) {
      fail("the rank ids must be 0 .. " + std::to_string(by_rank.size() - 1) + ", each once; rank_id " +
           std::to_string(table.ranks.size()) + " is missing");
    }
    table.ranks.push_back(entry);
  }
  if (table.ranks.empty()) fail("no device lists a rank");
  if (table.ranks.size() > static_cast<size_t>(kMaxGroupRanks)) {
    fail("it lists " + std::to_string(table.ranks.size()) + " ranks; a group has at most " +
         std::to_string(kMaxGroupRanks));
  }
  // One rank per device: two on one would both take the device's communicator slot.
  std::map<std::pair<std::string, int32_t>, size_t> rank_on;
  for (size_t r = 0; r < table.ranks.size(); ++r) {
    const auto [other, fresh] = rank_on.emplace(std::pair(table.ranks[r].server, table.ranks[r].device), r);
    if (!fresh) {
      fail("rank_id " + std::to_string(r) + " is on device_id " + std::to_string(table.ranks[r].device) +
           " of server '" + table.ranks[r].server + "', as rank_id " + std::to_string(other->second) +
           " is; each device holds one rank");
    }
  }
  return table;
}

}  // namespace moe_ep::cann
