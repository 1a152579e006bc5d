// Integer reads from JSON that refuse what nlohmann's get<T>() would convert silently: a float read as an
// integer (undefined behaviour once it is outside T's range) and an integer outside T's range (wrapped).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <type_traits>

namespace saetraj {

// True when `value` is a JSON integer that T holds exactly, or when T is not an integer type (bool and
// non-numeric types are left to get<T>(), which throws on a wrong type).
template <typename T>
bool json_fits(const nlohmann::json& value) {
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    if (value.is_number_unsigned()) {
      return value.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max());
    }
    if (!value.is_number_integer()) return false;
    const int64_t v = value.get<int64_t>();
    if constexpr (std::is_signed_v<T>) {
      return v >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
             v <= static_cast<int64_t>(std::numeric_limits<T>::max());
    } else {
      return v >= 0 && static_cast<uint64_t>(v) <= std::numeric_limits<T>::max();
    }
  } else {
    return true;
  }
}

}  // namespace saetraj
