// One error hierarchy for the whole tool. Errors carry a message that says what was expected and what
// was found; context ("while loading layer 3's SAE from ...") is added as an error unwinds, and the
// error is caught once, in main, where it is printed with the rank.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace saetraj {

class Error : public std::runtime_error {
 public:
  explicit Error(std::string message) : std::runtime_error(message), message_(std::move(message)) {}
  const char* what() const noexcept override { return message_.c_str(); }
  // Prepends a line of context, outermost first when printed.
  void add_context(const std::string& context) { message_ = context + ":\n  " + message_; }
  const std::string& message() const { return message_; }
  // Set when every rank raises this same error together (a failure on rank 0 broadcast to all), so
  // that only rank 0 prints it and no rank needs to abort the others.
  void set_collective() { collective_ = true; }
  bool collective() const { return collective_; }

 private:
  std::string message_;
  bool collective_ = false;
};

// A file that does not follow its format (safetensors, npz, JSON configs, tokenizer files).
class FormatError : public Error {
 public:
  using Error::Error;
};

// A request the user made that cannot be honoured (bad option, prompt, layer list, mismatched SAE).
class InputError : public Error {
 public:
  using Error::Error;
};

// The operating system refused something (open, mmap, write, HDF5 call).
class IoError : public Error {
 public:
  using Error::Error;
};

// The computation produced something it must not (NaN/Inf, a broken invariant).
class NumericError : public Error {
 public:
  using Error::Error;
};

// Concatenates anything streamable into one string: str("expected ", a, " but got ", b).
template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

// Runs f(); if it throws a saetraj::Error, adds `context` to it and rethrows.
template <typename F>
auto with_context(const std::string& context, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (Error& e) {
    e.add_context(context);
    throw;
  }
}

}  // namespace saetraj

// SAETRAJ_CHECK(cond, FormatError, "expected ", a, " but got ", b);
#define SAETRAJ_CHECK(cond, ErrorType, ...)                     \
  do {                                                          \
    if (!(cond)) throw ::saetraj::ErrorType(::saetraj::str(__VA_ARGS__)); \
  } while (0)
