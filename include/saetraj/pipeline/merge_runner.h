// `saetraj merge`: the shard files of a corpus sweep (`sweep --shard I/N`, one per job array task) into one
// sweep file with the prompts in corpus order, identical dataset by dataset to what one unsharded sweep of
// the corpus writes (the attributes recording when and how a run was started aside).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "saetraj/dist/communicator.h"

namespace saetraj::pipeline {

struct MergeOptions {
  std::vector<std::string> shards;
  std::string out;
  bool overwrite = false;
  std::string command_line;
};

struct MergeResult {
  int64_t prompts = 0;
  int64_t skipped = 0;
  int64_t shards = 0;
  int64_t graph_prompts = 0;  // prompts with graphs built (0 when the shards were swept without graphs)
};

// Collective over `comm`: every rank reads the shards and writes its share of the prompts. Refuses, with one
// line naming the file: a shard that is not complete, one made with other settings than the first (model,
// layers, k, SAEs, BOS, --heads, --orders, ... everything but --shard and --out), one that is not a shard
// (no --shard), shards of another count N, the same shard twice (overlapping prompts), and a missing shard
// (missing prompts).
MergeResult merge_shards(const MergeOptions& options, const dist::Communicator& comm);

}  // namespace saetraj::pipeline
