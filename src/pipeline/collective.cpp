#include "saetraj/pipeline/collective.h"

#include <string>

#include "saetraj/core/error.h"

namespace saetraj::pipeline {

namespace {
enum Kind : int64_t { kOk = 0, kInput, kFormat, kIo, kNumeric, kOther };

[[noreturn]] void rethrow(Kind kind, const std::string& message) {
  auto raise = [&](auto error) {
    error.set_collective();
    throw error;
  };
  switch (kind) {
    case kInput: raise(InputError(message));
    case kFormat: raise(FormatError(message));
    case kIo: raise(IoError(message));
    case kNumeric: raise(NumericError(message));
    default: raise(Error(message));
  }
  throw Error(message);
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
    } catch (const std::exception& e) {
      kind = kOther, message = e.what();
    }
  }
  comm.broadcast(&kind, sizeof kind, 0);
  if (kind == kOk) return;
  comm.broadcast_string(message, 0);
  rethrow(static_cast<Kind>(kind), message);
}

}  // namespace saetraj::pipeline
