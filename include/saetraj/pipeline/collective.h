// Running a step on rank 0 so that its failure becomes every rank's failure, with the same message,
// instead of a hang in the next collective call.
#pragma once

#include <filesystem>
#include <functional>
#include <string>

#include "saetraj/dist/communicator.h"

namespace saetraj::pipeline {

// A std::filesystem failure that reaches it becomes an IoError worded by describe_filesystem_error.
void run_on_root(const dist::Communicator& comm, const std::function<void()>& step);

// A std::filesystem error as one line for the user: "filesystem error: cannot create directories: Not a
// directory [a/b]" becomes "cannot create directories a/b: Not a directory; check the path".
std::string describe_filesystem_error(const std::filesystem::filesystem_error& e);

}  // namespace saetraj::pipeline
