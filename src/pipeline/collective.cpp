#include "saetraj/pipeline/collective.h"

#include <string>

#include "saetraj/core/error.h"

namespace saetraj::pipeline {

namespace {
enum Kind : int64_t { kOk = 0, kInput, kFormat, kIo, kNumeric, kOther };

template <typename E>
[[noreturn]] void raise_collective(const std::string& message) {
  E error(message);
  error.set_collective();
  throw error;
}

[[noreturn]] void rethrow(Kind kind, const std::string& message) {
  switch (kind) {
    case kInput: raise_collective<InputError>(message);
    case kFormat: raise_collective<FormatError>(message);
    case kIo: raise_collective<IoError>(message);
    case kNumeric: raise_collective<NumericError>(message);
    default: raise_collective<Error>(message);
  }
}
}  // namespace

void run_on_root(const dist::Communicator& comm, const std::function<void()>& step) {
  int64_t kind = kOk;
  std::string message;
  if (comm.rank() == 0) {
    try {
      step();
    } catch (const InputError& e) {
      kind = kInput, message = e.what();
    } catch (const FormatError& e) {
      kind = kFormat, message = e.what();
    } catch (const IoError& e) {
      kind = kIo, message = e.what();
    } catch (const NumericError& e) {
      kind = kNumeric, message = e.what();
    } catch (const std::filesystem::filesystem_error& e) {
      kind = kIo, message = describe_filesystem_error(e);
    } catch (const std::exception& e) {
      kind = kOther, message = e.what();
    }
  }
  comm.broadcast(&kind, sizeof kind, 0);
  if (kind == kOk) return;
  comm.broadcast_string(message, 0);
  rethrow(static_cast<Kind>(kind), message);
}

std::string describe_filesystem_error(const std::filesystem::filesystem_error& e) {
  std::string op = e.what();
  const std::string prefix = "filesystem error: ";
  if (op.rfind(prefix, 0) == 0) op = op.substr(prefix.size());
  const auto cut = op.find(": " + e.code().message());
  if (cut != std::string::npos) op = op.substr(0, cut);
  std::string paths = e.path1().string();
  if (!e.path2().empty()) paths += " and " + e.path2().string();
  return op + (paths.empty() ? "" : " " + paths) + ": " + e.code().message() + "; check the path";
}

}  // namespace saetraj::pipeline
