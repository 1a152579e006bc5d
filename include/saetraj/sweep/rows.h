// Row bookkeeping of the evolution tables. For a prompt of N tokens, query q = 1..N-1 has q+2 steps
// s = 0..q+1; rows are ordered by q, then s.
#pragma once

#include <cstdint>

namespace saetraj::sweep {

inline int64_t steps_of_query(int64_t q) { return q + 2; }
// Rows of a prompt of n tokens: sum_{q=1}^{n-1} (q+2) = (n-1)(n+4)/2.
inline int64_t rows_of_prompt(int64_t n) { return n < 2 ? 0 : (n - 1) * (n + 4) / 2; }
// First row of query q inside its prompt: the rows of all queries before it, = rows_of_prompt(q).
inline int64_t row_of_query(int64_t q) { return rows_of_prompt(q); }

}  // namespace saetraj::sweep
