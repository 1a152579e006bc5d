// Progress of a whole job, printed by rank 0 as plain lines (readable in a terminal and in a SLURM log):
// prompts done, rows per second over all ranks, ETA.
#pragma once

#include <chrono>
#include <cstdint>

#include "saetraj/dist/communicator.h"

namespace saetraj::pipeline {

class Progress {
 public:
  Progress(const dist::Communicator& comm, int64_t total_prompts, int64_t rows_to_do);
  // rows_to_do: rows of all layers of the prompts not yet done.
  // Collective: `prompts` more prompts are done, this rank computed `my_rows` rows (all its layers).
  void add_done_prompts(int64_t prompts, int64_t my_rows);
  void finish();

 private:
  void print(bool final_line);
  const dist::Communicator& comm_;
  int64_t total_prompts_, total_rows_;
  int64_t done_prompts_ = 0, resumed_prompts_ = 0, rows_ = 0;
  bool first_ = true;
  std::chrono::steady_clock::time_point start_, last_print_;
};

}  // namespace saetraj::pipeline
