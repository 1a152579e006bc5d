// Wall-clock intervals, for the phase times the sweep and the benchmark print.
#pragma once

#include <chrono>

namespace saetraj {

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace saetraj
