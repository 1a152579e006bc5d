#include "saetraj/pipeline/progress.h"

#include <cstdio>

namespace saetraj::pipeline {

namespace {
std::string clock_text(double seconds) {
  const long s = static_cast<long>(seconds + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%02ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}
}  // namespace

Progress::Progress(const dist::Communicator& comm, int64_t total_prompts, int64_t rows_to_do)
    : comm_(comm), total_prompts_(total_prompts), total_rows_(rows_to_do) {
  start_ = last_print_ = std::chrono::steady_clock::now();
}

void Progress::add_done_prompts(int64_t prompts, int64_t my_rows) {
  int64_t rows = my_rows;
  if (first_) {
    // Prompts finished by an earlier run (resume): counted as done, not in the rate.
    resumed_prompts_ = prompts;
    done_prompts_ = prompts;
    first_ = false;
    return;
  }
  comm_.allreduce_sum(&rows, 1);
  done_prompts_ += prompts;
  rows_ += rows;
  const auto now = std::chrono::steady_clock::now();
  if (std::chrono::duration<double>(now - last_print_).count() >= 2.0 || done_prompts_ == total_prompts_) {
    print(false);
    last_print_ = now;
  }
}

void Progress::print(bool final_line) {
  if (comm_.rank() != 0) return;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double rate = elapsed > 0 ? rows_ / elapsed : 0.0;
  // Rows grow with prompt length squared, so the ETA counts rows, not prompts.
  const double eta = rate > 0 ? static_cast<double>(total_rows_ - rows_) / rate : 0.0;
  std::fprintf(stderr, "saetraj: %s prompts %lld/%lld (%.1f%%), %.0f rows/s, elapsed %s, ETA %s\n",
               final_line ? "done:" : "progress:", static_cast<long long>(done_prompts_),
               static_cast<long long>(total_prompts_),
               total_prompts_ ? 100.0 * done_prompts_ / total_prompts_ : 100.0, rate, clock_text(elapsed).c_str(),
               clock_text(eta).c_str());
  std::fflush(stderr);
}

void Progress::finish() {
  if (comm_.rank() != 0) return;
  print(true);
}

}  // namespace saetraj::pipeline
