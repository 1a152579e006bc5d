// Running a step on rank 0 so that its failure becomes every rank's failure, with the same message,
// instead of a hang in the next collective call.
#pragma once

#include <functional>

#include "saetraj/dist/communicator.h"

namespace saetraj::pipeline {

void run_on_root(const dist::Communicator& comm, const std::function<void()>& step);

}  // namespace saetraj::pipeline
