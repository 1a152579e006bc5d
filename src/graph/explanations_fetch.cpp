// The Neuronpedia feature API client (libcurl). It is polite (a minimum gap between requests), bounded
// (timeouts, a cap on the response size, a fixed number of attempts) and keeps the API key secret:
// the key only ever goes into the request header, and every message is scrubbed of it before it leaves.
#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "explanations_common.h"
#include "saetraj/core/error.h"
#include "saetraj/core/strings.h"
#include "saetraj/graph/explanations.h"

namespace saetraj::graph {
namespace {

class SteadyClock final : public ApiClock {
 public:
  double now() override {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
  void sleep_for(double seconds) override {
    if (seconds > 0) std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  }
};

struct CurlEasyDeleter {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
};
struct CurlListDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

// curl_global_init is not thread-safe; do it once, before the first handle.
void init_curl_once() {
  static std::once_flag once;
  static CURLcode code = CURLE_OK;
  std::call_once(once, [] { code = curl_global_init(CURL_GLOBAL_DEFAULT); });
  SAETRAJ_CHECK(code == CURLE_OK, IoError, "cannot initialise libcurl: ", curl_easy_strerror(code));
}

// What one HTTP exchange gave.
struct Attempt {
  CURLcode code = CURLE_OK;
  long status = 0;
  std::string body;
  bool too_large = false;
  double retry_after_s = 0;  // from a Retry-After header; 0 when absent
  std::string curl_message;
};

// Transient failures worth another try: the network, not the request, went wrong.
bool is_transient(CURLcode code) {
  switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_COULDNT_CONNECT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return true;
    default:
      return false;
  }
}

}  // namespace

std::shared_ptr<ApiClock> steady_api_clock() { return std::make_shared<SteadyClock>(); }

struct FeatureApiClient::Impl {
  FeatureApiOptions options;
  ExplanationLimits limits;
  std::string api_key;  // empty: none sent
  std::unique_ptr<CURL, CurlEasyDeleter> curl;
  std::unique_ptr<curl_slist, CurlListDeleter> headers;
  char error_buffer[CURL_ERROR_SIZE] = {};
  Attempt* current = nullptr;
  std::shared_ptr<ApiClock> clock;
  double last_start = 0.0;
  int requests = 0;

  std::string redact(std::string text) const {
    if (api_key.empty()) return text;
    for (size_t at = text.find(api_key); at != std::string::npos; at = text.find(api_key, at)) {
      text.replace(at, api_key.size(), "<api key>");
    }
    return text;
  }

  template <typename E>
  [[noreturn]] void fail(const std::string& message) const {
    throw E(redact(message));
  }

  static size_t on_body(char* data, size_t size, size_t count, void* user) {
    auto* self = static_cast<Impl*>(user);
    const size_t bytes = size * count;
    Attempt& attempt = *self->current;
    if (attempt.body.size() + bytes > self->limits.max_response_bytes) {
      attempt.too_large = true;
      return 0;  // makes libcurl stop with CURLE_WRITE_ERROR
    }
    attempt.body.append(data, bytes);
    return bytes;
  }

  void wait_for_turn() {
    if (requests > 0) {
      const double wait = last_start + options.min_interval_s - clock->now();
      if (wait > 0) clock->sleep_for(wait);
    }
    last_start = clock->now();
    ++requests;
  }

  Attempt perform(const std::string& url) {
    Attempt attempt;
    current = &attempt;
    error_buffer[0] = '\0';
    curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
    wait_for_turn();
    attempt.code = curl_easy_perform(curl.get());
    current = nullptr;
    attempt.curl_message = error_buffer[0] ? error_buffer : curl_easy_strerror(attempt.code);
    curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &attempt.status);
    curl_off_t retry_after = 0;
    if (curl_easy_getinfo(curl.get(), CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK && retry_after > 0) {
      attempt.retry_after_s = static_cast<double>(retry_after);
    }
    return attempt;
  }

  double backoff(int attempt_number) const {
    return std::min(options.backoff_max_s, options.backoff_initial_s * std::ldexp(1.0, attempt_number - 1));
  }

  std::optional<std::string> parse(const std::string& body, const std::string& url) const {
    const std::string where = "response from " + url;
    nlohmann::json response;
    try {
      response = nlohmann::json::parse(body);
    } catch (const nlohmann::json::parse_error& e) {
      fail<FormatError>(str(where, ": not JSON (", clip(e.what(), 200), ")"));
    }
    if (!response.is_object()) {
      fail<FormatError>(str(where, ": expected a JSON object, found ", response.type_name()));
    }
    const auto explanations = response.find("explanations");
    if (explanations == response.end() || !explanations->is_array()) {
      fail<FormatError>(str(where, ": expected an \"explanations\" array, found ",
                            explanations == response.end() ? "no such key" : explanations->type_name()));
    }
    if (explanations->empty()) return std::nullopt;
    const nlohmann::json& first = explanations->front();
    if (!first.is_object()) {
      fail<FormatError>(str(where, ": expected explanations[0] to be an object, found ", first.type_name()));
    }
    try {
      // A server that echoes the key into the text must not get it into the sweep file or the cache.
      return redact(checked_description(first, where + " explanations[0]", limits));
    } catch (const FormatError& e) {
      fail<FormatError>(e.message());
    }
  }
};

FeatureApiClient::FeatureApiClient(FeatureApiOptions options, ExplanationLimits limits)
    : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.options = std::move(options);
  s.clock = s.options.clock ? s.options.clock : steady_api_clock();
  s.limits = limits;
  const std::string& base = s.options.base_url;
  SAETRAJ_CHECK(base.rfind("http://", 0) == 0 || base.rfind("https://", 0) == 0, InputError,
                "Neuronpedia base URL must start with http:// or https://, got '", clip(base, 100), "'");
  SAETRAJ_CHECK(s.options.max_attempts >= 1, InputError, "max_attempts must be at least 1, got ",
                s.options.max_attempts);
  SAETRAJ_CHECK(s.options.min_interval_s >= 0 && s.options.timeout_s > 0 && s.options.connect_timeout_s > 0,
                InputError, "Neuronpedia request interval must be >= 0 and timeouts > 0");

  if (!s.options.api_key_env.empty()) {
    if (const char* key = std::getenv(s.options.api_key_env.c_str())) s.api_key = key;
  }
  // A newline in the key would let it smuggle in further header lines.
  const bool printable = std::all_of(s.api_key.begin(), s.api_key.end(), [](char c) {
    return static_cast<unsigned char>(c) > 0x20 && c != 0x7f;
  });
  SAETRAJ_CHECK(printable, InputError, "environment variable ", s.options.api_key_env,
                " holds spaces or control characters, which cannot go in the x-api-key header");

  init_curl_once();
  s.curl.reset(curl_easy_init());
  SAETRAJ_CHECK(s.curl, IoError, "cannot create a libcurl handle");
  curl_slist* list = curl_slist_append(nullptr, "Accept: application/json");
  if (list && !s.api_key.empty()) {
    curl_slist* extended = curl_slist_append(list, ("x-api-key: " + s.api_key).c_str());
    if (!extended) curl_slist_free_all(list);
    list = extended;
  }
  s.headers.reset(list);
  SAETRAJ_CHECK(s.headers, IoError, "cannot build the HTTP request headers");

  CURL* c = s.curl.get();
  curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, s.headers.get());
  curl_easy_setopt(c, CURLOPT_USERAGENT, "saetraj (feature explanations)");
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  // Redirects are not followed: the x-api-key header would go to whatever host they name.
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(s.options.connect_timeout_s * 1000));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(s.options.timeout_s * 1000));
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, s.error_buffer);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &Impl::on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, impl_.get());
}

FeatureApiClient::~FeatureApiClient() = default;

int FeatureApiClient::requests_sent() const { return impl_->requests; }

std::optional<std::string> FeatureApiClient::fetch(const NeuronpediaSource& source, int64_t index) {
  check_neuronpedia_source(source);
  SAETRAJ_CHECK(index >= 0, InputError, "feature index must be non-negative, got ", index);
  Impl& s = *impl_;
  std::string base = s.options.base_url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  const std::string url = str(base, "/api/feature/", source.model_id, "/", source.source_id, "/", index);

  std::string last_problem;
  for (int attempt_number = 1;; ++attempt_number) {
    const Attempt attempt = s.perform(url);
    double delay = s.backoff(attempt_number);
    if (attempt.too_large) {
      s.fail<FormatError>(str("response from ", url, " is larger than the limit of ",
                              human_bytes(static_cast<double>(s.limits.max_response_bytes))));
    }
    if (attempt.code != CURLE_OK) {
      if (!is_transient(attempt.code)) {
        const char* hint = attempt.code == CURLE_COULDNT_RESOLVE_HOST
                               ? " (compute nodes often have no internet: fetch explanations on a login node)"
                               : "";
        s.fail<IoError>(str("cannot reach ", url, ": ", attempt.curl_message, hint));
      }
      last_problem = attempt.curl_message;
    } else if (attempt.status == 200) {
      return s.parse(attempt.body, url);
    } else if (attempt.status == 404) {
      return std::nullopt;
    } else if (attempt.status == 429) {
      last_problem = "HTTP 429 (too many requests)";
      if (attempt.retry_after_s > 0) delay = std::min(attempt.retry_after_s, s.options.retry_after_max_s);
    } else if (attempt.status >= 500 && attempt.status <= 599) {
      last_problem = str("HTTP ", attempt.status);
    } else {
      std::string hint;
      if (attempt.status == 401 || attempt.status == 403) {
        hint = s.api_key.empty() ? str(" (no API key sent: $", s.options.api_key_env, " is not set)")
                                 : str(" (check the API key in $", s.options.api_key_env, ")");
      } else if (attempt.status >= 300 && attempt.status < 400) {
        hint = " (redirects are not followed: set the base URL to the final host)";
      }
      // Redacted before clipping, so that no key cut in two at the clip survives in part.
      s.fail<IoError>(str("HTTP ", attempt.status, " from ", url, hint, ": ", clip(s.redact(attempt.body), 200)));
    }
    if (attempt_number >= s.options.max_attempts) {
      s.fail<IoError>(
          str("giving up on ", url, " after ", attempt_number, " attempts; last: ", last_problem));
    }
    s.clock->sleep_for(delay);
  }
}

}  // namespace saetraj::graph
