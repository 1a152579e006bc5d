// Feature explanations: bulk export files, the cache, the feature API client (against a scripted HTTP
// server on 127.0.0.1 run inside the test) and the store that combines them.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "saetraj/core/error.h"
#include "saetraj/graph/explanations.h"
#include "test_support.h"

namespace saetraj::graph {
namespace {

namespace fs = std::filesystem;
using saetraj::testing::read_file;
using saetraj::testing::TempDir;
using saetraj::testing::write_file;
using ::testing::HasSubstr;
using ::testing::Not;

const NeuronpediaSource kSource{"gemma-2-2b", "12-gemmascope-res-65k"};

void write_gzip(const std::string& path, const std::string& text) {
  gzFile file = gzopen(path.c_str(), "wb");
  if (!file) throw std::runtime_error("gzopen failed for " + path);
  const int written = gzwrite(file, text.data(), static_cast<unsigned>(text.size()));
  if (gzclose(file) != Z_OK || written != static_cast<int>(text.size())) {
    throw std::runtime_error("gzwrite failed for " + path);
  }
}

std::string line(const std::string& index, const std::string& description) {
  return R"({"modelId":"gemma-2-2b","layer":"12-gemmascope-res-65k","index":")" + index +
         R"(","description":")" + description + R"(","explanationModelName":"gpt-4o-mini"})" + "\n";
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

class BulkFiles : public ::testing::Test {
 protected:
  std::string batch(const std::string& name) {
    const fs::path folder = bulk_explanations_dir(dir.path(), kSource);
    fs::create_directories(folder);
    return (folder / name).string();
  }
  TempDir dir{"saetraj-explain"};
};

TEST_F(BulkFiles, KeepsOnlyWantedFeaturesFirstInFileOrder) {
  write_gzip(batch("batch-0.jsonl.gz"),
             line("5", "five") + line("3", "three") + line("5", "five again") + line("8", "eight"));
  write_gzip(batch("batch-1.jsonl.gz"), line("3", "three later") + line("7", "caf\u00e9 \u2615"));
  const BulkReadResult result = read_bulk_explanations(dir.path(), kSource, {3, 5, 7, 9});
  const std::map<int64_t, std::string> expected{{3, "three"}, {5, "five"}, {7, "caf\u00e9 \u2615"}};
  EXPECT_EQ(result.descriptions, expected);
  EXPECT_EQ(result.files_read, 2);
}

TEST_F(BulkFiles, BatchesAreReadInNumericOrderAndOtherFilesIgnored) {
  write_gzip(batch("batch-10.jsonl.gz"), line("1", "from ten"));
  write_gzip(batch("batch-2.jsonl.gz"), line("1", "from two") + line("4", "four from two"));
  write_gzip(batch("batch-1.jsonl.gz"), line("4", "four from one"));
  write_file(batch("batch-x.jsonl.gz"), "not an export");
  write_file(batch("notes.txt"), "not an export");
  const BulkReadResult result = read_bulk_explanations(dir.path(), kSource, {1, 4});
  const std::map<int64_t, std::string> expected{{1, "from two"}, {4, "four from one"}};
  EXPECT_EQ(result.descriptions, expected);
}

TEST_F(BulkFiles, StopsReadingOnceEveryWantedFeatureIsFound) {
  write_gzip(batch("batch-0.jsonl.gz"), line("2", "two"));
  write_file(batch("batch-1.jsonl.gz"), "would fail: not gzip");
  const BulkReadResult result = read_bulk_explanations(dir.path(), kSource, {2});
  EXPECT_EQ(result.descriptions.at(2), "two");
  EXPECT_EQ(result.files_read, 1);
  EXPECT_EQ(read_bulk_explanations(dir.path(), kSource, {}).files_read, 0);
}

TEST_F(BulkFiles, MissingFolderGivesNothing) {
  const BulkReadResult result = read_bulk_explanations(dir.path(), kSource, {1, 2});
  EXPECT_TRUE(result.descriptions.empty());
  EXPECT_EQ(result.files_read, 0);
}

TEST_F(BulkFiles, AcceptsCrlfBlankLinesAndNoFinalNewline) {
  write_gzip(batch("batch-0.jsonl.gz"), "\n" + line("1", "one").substr(0, line("1", "one").size() - 1) +
                                            "\r\n  \n" + R"({"index":"2","description":"two"})");
  const BulkReadResult result = read_bulk_explanations(dir.path(), kSource, {1, 2});
  const std::map<int64_t, std::string> expected{{1, "one"}, {2, "two"}};
  EXPECT_EQ(result.descriptions, expected);
}

TEST_F(BulkFiles, RefusesAFileThatIsNotGzip) {
  write_file(batch("batch-0.jsonl.gz"), line("1", "plain text"));
  EXPECT_THAT(error_of([&] { read_bulk_explanations(dir.path(), kSource, {1}); }),
              ::testing::MatchesRegex(".*batch-0\\.jsonl\\.gz: not a gzip file.*"));
}

std::string many_lines(int count) {
  std::string text;
  for (int i = 0; i < count; ++i)
    text += line(std::to_string(i), "feature number " + std::to_string(i * 7919));
  return text;
}

TEST_F(BulkFiles, RefusesATruncatedGzipStream) {
  const std::string path = batch("batch-0.jsonl.gz");
  write_gzip(path, many_lines(3000));
  const std::string bytes = read_file(path);
  write_file(path, bytes.substr(0, bytes.size() / 2));
  const std::string message = error_of([&] { read_bulk_explanations(dir.path(), kSource, {99999}); });
  EXPECT_THAT(message, HasSubstr("batch-0.jsonl.gz: corrupt gzip stream after line"));
  EXPECT_THAT(message, HasSubstr("unexpected end of file"));
}

TEST_F(BulkFiles, RefusesAGzipStreamWithABadChecksum) {
  const std::string path = batch("batch-0.jsonl.gz");
  write_gzip(path, many_lines(50));
  std::string bytes = read_file(path);
  bytes[bytes.size() - 8] = static_cast<char>(bytes[bytes.size() - 8] ^ 0x5a);  // first byte of the CRC-32
  write_file(path, bytes);
  const std::string message = error_of([&] { read_bulk_explanations(dir.path(), kSource, {99999}); });
  EXPECT_THAT(message, HasSubstr("batch-0.jsonl.gz: corrupt gzip stream after line"));
  EXPECT_THAT(message, HasSubstr("incorrect data check"));
}

TEST_F(BulkFiles, MalformedLinesNameFileAndLine) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"this is not json", "line 2: not JSON"},
      {"[1, 2]", "line 2: expected a JSON object, found array"},
      {R"({"description":"no index"})", "line 2: no \"index\" key"},
      {R"({"index":5,"description":"x"})",
       "line 2: expected \"index\" to be a string holding a non-negative integer, found 5"},
      {R"({"index":"-3","description":"x"})", "non-negative integer, found \"-3\""},
      {R"({"index":"1.5","description":"x"})", "non-negative integer, found \"1.5\""},
      {R"({"index":"","description":"x"})", "non-negative integer, found \"\""},
      {R"({"index":"12345678901234567890","description":"x"})", "found \"12345678901234567890\""},
      {R"({"index":"4"})", "line 2: no \"description\" key"},
      {R"({"index":"4","description":7})", "line 2: expected \"description\" to be a string, found number"},
      {R"({"index":"4","description":null})", "expected \"description\" to be a string, found null"},
  };
  for (const auto& [bad, expected] : cases) {
    write_gzip(batch("batch-0.jsonl.gz"), line("1", "fine") + bad + "\n" + line("2", "never reached"));
    const std::string message = error_of([&] { read_bulk_explanations(dir.path(), kSource, {1, 2}); });
    EXPECT_THAT(message, HasSubstr(expected)) << bad;
    EXPECT_THAT(message, HasSubstr("batch-0.jsonl.gz line 2")) << bad;
  }
}

TEST_F(BulkFiles, RefusesALineOverTheDefaultLimit) {
  const std::string huge = R"({"index":"1","description":")" + std::string(size_t{2} << 20, 'a') + "\"}\n";
  write_gzip(batch("batch-0.jsonl.gz"), line("0", "zero") + huge);
  EXPECT_THAT(error_of([&] { read_bulk_explanations(dir.path(), kSource, {1}); }),
              HasSubstr("batch-0.jsonl.gz line 2: longer than the limit of 1.00 MiB"));
}

TEST_F(BulkFiles, RefusesADescriptionOverTheLimit) {
  ExplanationLimits limits;
  limits.max_description_bytes = 10;
  write_gzip(batch("batch-0.jsonl.gz"), line("1", "exactly 10") + line("2", "eleven char"));
  EXPECT_EQ(read_bulk_explanations(dir.path(), kSource, {1}, limits).descriptions.at(1), "exactly 10");
  EXPECT_THAT(error_of([&] { read_bulk_explanations(dir.path(), kSource, {2}, limits); }),
              HasSubstr("line 2: description of 11 B exceeds the limit of 10 B"));
}

TEST(NeuronpediaIds, RefusesIdsThatAreNotSafePathComponents) {
  EXPECT_NO_THROW(check_neuronpedia_source({"gpt2-small", "0-res-jb"}));
  EXPECT_THAT(error_of([] {
                check_neuronpedia_source({"..", "0-res-jb"});
              }),
              HasSubstr("Neuronpedia model id '..' is not valid"));
  EXPECT_THAT(error_of([] {
                check_neuronpedia_source({"gpt2-small", "a/../b"});
              }),
              HasSubstr("Neuronpedia source id 'a/../b' is not valid"));
  EXPECT_THAT(error_of([] { check_neuronpedia_source({"", "x"}); }), HasSubstr("model id '' is not valid"));
}

// ---- cache --------------------------------------------------------------------------------------------

TEST(ExplanationCacheTest, StoresAndLoadsPositiveAndNegativeEntries) {
  TempDir dir("saetraj-explain");
  const ExplanationCache cache(dir.path());
  EXPECT_EQ(cache.path(kSource, 42), dir.path() + "/gemma-2-2b/12-gemmascope-res-65k/42.json");
  EXPECT_FALSE(cache.load(kSource, 42).has_value());

  cache.store(kSource, 42, {true, "numbers \"quoted\""});
  cache.store(kSource, 43, {false, ""});
  const auto positive = cache.load(kSource, 42);
  ASSERT_TRUE(positive.has_value());
  EXPECT_TRUE(positive->has_explanation);
  EXPECT_EQ(positive->description, "numbers \"quoted\"");
  const auto negative = cache.load(kSource, 43);
  ASSERT_TRUE(negative.has_value());
  EXPECT_FALSE(negative->has_explanation);
  EXPECT_THAT(read_file(cache.path(kSource, 43)), HasSubstr("\"description\": null"));

  cache.store(kSource, 42, {true, "replaced"});
  EXPECT_EQ(cache.load(kSource, 42)->description, "replaced");
  std::vector<std::string> names;
  for (const auto& entry : fs::directory_iterator(dir.path() + "/gemma-2-2b/12-gemmascope-res-65k")) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"42.json", "43.json"}));  // no temporary files left behind
}

TEST(ExplanationCacheTest, RefusesCorruptEntries) {
  TempDir dir("saetraj-explain");
  const ExplanationCache cache(dir.path());
  cache.store(kSource, 1, {true, "one"});
  const std::string path = cache.path(kSource, 1);

  write_file(path, "{\"index\": 1, \"description\": ");
  EXPECT_THAT(error_of([&] { cache.load(kSource, 1); }),
              ::testing::AllOf(HasSubstr(path + ": not JSON"), HasSubstr("delete the file")));
  write_file(path, R"({"index": 2, "description": "two"})");
  EXPECT_THAT(error_of([&] { cache.load(kSource, 1); }),
              HasSubstr(path + ": expected \"index\": 1, found 2"));
  write_file(path, R"({"index": 1, "description": 5})");
  EXPECT_THAT(error_of([&] { cache.load(kSource, 1); }),
              HasSubstr(path + ": expected \"description\" to be a string, found number"));
  // A huge entry is refused by its size, before it is read.
  write_file(path, R"({"index": 1, "description": ")" + std::string(size_t{2} << 20, 'x') + "\"}");
  EXPECT_THAT(error_of([&] { cache.load(kSource, 1); }),
              ::testing::AllOf(HasSubstr(path + ": 2.00 MiB is more than a cache entry can hold (limit 1.00 MiB)"),
                               HasSubstr("delete the file")));
}

// ---- a scripted HTTP server ---------------------------------------------------------------------------

// Serves one connection per script step, in order, then stops. Each wait is bounded, so a client that
// never comes cannot hold the test.
class ScriptedHttpServer {
 public:
  enum class Kind { reply, hang, reset };
  struct Step {
    Kind kind;
    std::string response;
  };

  explicit ScriptedHttpServer(std::vector<Step> script) : script_(std::move(script)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (listen_fd_ < 0) throw std::runtime_error("socket failed");
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = 0;
    socklen_t length = sizeof address;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::listen(listen_fd_, 8) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      ::close(listen_fd_);
      throw std::runtime_error("cannot listen on 127.0.0.1");
    }
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { serve(); });
  }

  ~ScriptedHttpServer() {
    stop_ = true;
    thread_.join();
    ::close(listen_fd_);
  }

  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  std::vector<std::string> requests() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return requests_;
  }

 private:
  bool wait_readable(int fd, int max_ms) const {
    for (int waited = 0; waited < max_ms && !stop_; waited += 20) {
      pollfd p{fd, POLLIN, 0};
      if (::poll(&p, 1, 20) > 0) return true;
    }
    return false;
  }

  void drain(int fd, int max_ms) const {
    char buffer[4096];
    while (wait_readable(fd, max_ms) && ::recv(fd, buffer, sizeof buffer, 0) > 0) {
    }
  }

  void serve() {
    for (const Step& step : script_) {
      if (!wait_readable(listen_fd_, 10000)) return;
      const int connection = ::accept(listen_fd_, nullptr, nullptr);
      if (connection < 0) return;
      std::string head;
      char buffer[4096];
      while (head.find("\r\n\r\n") == std::string::npos && wait_readable(connection, 2000)) {
        const ssize_t n = ::recv(connection, buffer, sizeof buffer, 0);
        if (n <= 0) break;
        head.append(buffer, static_cast<size_t>(n));
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        requests_.push_back(head);
      }
      if (step.kind == Kind::reply) {
        size_t sent = 0;
        while (sent < step.response.size()) {
          const ssize_t n =
              ::send(connection, step.response.data() + sent, step.response.size() - sent, MSG_NOSIGNAL);
          if (n <= 0) break;
          sent += static_cast<size_t>(n);
        }
        ::shutdown(connection, SHUT_WR);
        drain(connection, 2000);
      } else if (step.kind == Kind::hang) {
        drain(connection, 5000);  // until the client gives up and closes
      } else {
        linger abort_on_close{1, 0};  // close() then sends RST: "connection reset by peer"
        ::setsockopt(connection, SOL_SOCKET, SO_LINGER, &abort_on_close, sizeof abort_on_close);
      }
      ::close(connection);
    }
  }

  std::vector<Step> script_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  mutable std::mutex mutex_;
  std::vector<std::string> requests_;
  std::thread thread_;
};

using Step = ScriptedHttpServer::Step;
using Kind = ScriptedHttpServer::Kind;

Step reply(int status, const std::string& reason, const std::string& body, const std::string& headers = "") {
  return {Kind::reply,
          "HTTP/1.1 " + std::to_string(status) + " " + reason +
              "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
              "\r\nConnection: close\r\n" + headers + "\r\n" + body};
}

const std::string kFeature42 =
    R"({"modelId":"gemma-2-2b","layer":"12-gemmascope-res-65k","index":"42",)"
    R"("explanations":[{"description":" references to flashlights","typeName":"oai"},)"
    R"({"description":"second opinion"}],"activations":[{"tokens":["a","b"],"values":[0.5,1.5]}]})";
const std::string kFeatureOk = R"({"explanations":[{"description":"ok"}]})";

const char* const kKeyEnv = "SAETRAJ_TEST_NEURONPEDIA_KEY";
const char* const kSecret = "sk-np-TOPSECRET-0123456789";

class FeatureApi : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("NO_PROXY", "127.0.0.1,localhost", 1);
    ::setenv("no_proxy", "127.0.0.1,localhost", 1);
    ::unsetenv(kKeyEnv);
  }
  void TearDown() override { ::unsetenv(kKeyEnv); }

  static FeatureApiOptions options(const ScriptedHttpServer& server) {
    FeatureApiOptions o;
    o.base_url = server.base_url() + "/";
    o.api_key_env = kKeyEnv;
    o.min_interval_s = 0;
    o.connect_timeout_s = 2;
    o.timeout_s = 0.4;
    o.max_attempts = 3;
    o.backoff_initial_s = 0.01;
    o.backoff_max_s = 0.05;
    o.retry_after_max_s = 5;
    return o;
  }
};

// A clock that never sleeps: each wait is recorded and advances its time, so the tests check what the
// client waited for, not how long the machine took.
class RecordingClock final : public ApiClock {
 public:
  double now() override { return time_; }
  void sleep_for(double seconds) override {
    waits_.push_back(seconds);
    time_ += seconds;
  }
  const std::vector<double>& waits() const { return waits_; }

 private:
  double time_ = 1000.0;
  std::vector<double> waits_;
};

TEST_F(FeatureApi, ReturnsTheFirstExplanationWithoutAKeyWhenNoneIsSet) {
  ScriptedHttpServer server({reply(200, "OK", kFeature42)});
  FeatureApiClient client(options(server));
  EXPECT_EQ(client.fetch(kSource, 42), std::optional<std::string>(" references to flashlights"));
  const auto requests = server.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_THAT(requests[0],
              ::testing::StartsWith("GET /api/feature/gemma-2-2b/12-gemmascope-res-65k/42 HTTP/1.1\r\n"));
  EXPECT_THAT(requests[0], Not(::testing::ContainsRegex("[xX]-[aA][pP][iI]-[kK][eE][yY]")));
}

TEST_F(FeatureApi, SendsTheKeyWhenSetAndNeverShowsIt) {
  ::setenv(kKeyEnv, kSecret, 1);
  ScriptedHttpServer server(
      {reply(200, "OK", kFeatureOk),
       reply(401, "Unauthorized", std::string(R"({"error":"bad key )") + kSecret + "\"}")});
  FeatureApiClient client(options(server));
  EXPECT_EQ(client.fetch(kSource, 1), std::optional<std::string>("ok"));
  const std::string message = error_of([&] { client.fetch(kSource, 2); });
  EXPECT_THAT(message, HasSubstr("HTTP 401 from " + server.base_url() + "/api/feature/gemma-2-2b/"));
  EXPECT_THAT(message, HasSubstr("check the API key in $SAETRAJ_TEST_NEURONPEDIA_KEY"));
  EXPECT_THAT(message, HasSubstr("bad key <api key>"));
  EXPECT_THAT(message, Not(HasSubstr(kSecret)));
  const auto requests = server.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_THAT(requests[0], HasSubstr(std::string("\r\nx-api-key: ") + kSecret + "\r\n"));
}

TEST_F(FeatureApi, RefusesAKeyThatWouldBreakTheHeader) {
  ::setenv(kKeyEnv, "abc\r\nX-Evil: 1", 1);
  ScriptedHttpServer server({});
  const std::string message = error_of([&] { FeatureApiClient client(options(server)); });
  EXPECT_THAT(message, HasSubstr("SAETRAJ_TEST_NEURONPEDIA_KEY holds spaces or control characters"));
  EXPECT_THAT(message, Not(HasSubstr("X-Evil")));
}

TEST_F(FeatureApi, NotFoundAndEmptyListMeanNoExplanation) {
  ScriptedHttpServer server({reply(404, "Not Found", R"({"error":"not found"})"),
                             reply(200, "OK", R"({"index":"3","explanations":[]})")});
  FeatureApiClient client(options(server));
  EXPECT_EQ(client.fetch(kSource, 2), std::nullopt);
  EXPECT_EQ(client.fetch(kSource, 3), std::nullopt);
  EXPECT_EQ(client.requests_sent(), 2);
}

TEST_F(FeatureApi, RetriesAServerError) {
  ScriptedHttpServer server({reply(500, "Internal Server Error", "oops"), reply(502, "Bad Gateway", ""),
                             reply(200, "OK", kFeatureOk)});
  FeatureApiClient client(options(server));
  EXPECT_EQ(client.fetch(kSource, 7), std::optional<std::string>("ok"));
  EXPECT_EQ(client.requests_sent(), 3);
}

TEST_F(FeatureApi, GivesUpAfterMaxAttempts) {
  ScriptedHttpServer server(
      {reply(503, "Unavailable", ""), reply(503, "Unavailable", ""), reply(503, "Unavailable", "")});
  FeatureApiClient client(options(server));
  EXPECT_THAT(error_of([&] { client.fetch(kSource, 7); }),
              ::testing::MatchesRegex("giving up on http://127\\.0\\.0\\.1:[0-9]+/api/feature/gemma-2-2b/"
                                      "12-gemmascope-res-65k/7 after 3 attempts; last: HTTP 503"));
}

TEST_F(FeatureApi, HonoursRetryAfterOn429) {
  ScriptedHttpServer server(
      {reply(429, "Too Many Requests", "", "Retry-After: 1\r\n"), reply(200, "OK", kFeatureOk)});
  FeatureApiOptions o = options(server);
  const auto clock = std::make_shared<RecordingClock>();
  o.clock = clock;
  FeatureApiClient client(o);
  EXPECT_EQ(client.fetch(kSource, 7), std::optional<std::string>("ok"));
  EXPECT_EQ(clock->waits(), std::vector<double>{1.0});  // the server's Retry-After, not the back-off
  EXPECT_EQ(client.requests_sent(), 2);
}

TEST_F(FeatureApi, CapsRetryAfter) {
  ScriptedHttpServer server(
      {reply(429, "Too Many Requests", "", "Retry-After: 3600\r\n"), reply(200, "OK", kFeatureOk)});
  FeatureApiOptions o = options(server);
  o.retry_after_max_s = 0.3;
  const auto clock = std::make_shared<RecordingClock>();
  o.clock = clock;
  FeatureApiClient client(o);
  EXPECT_EQ(client.fetch(kSource, 7), std::optional<std::string>("ok"));
  EXPECT_EQ(clock->waits(), std::vector<double>{0.3});  // an hour asked, the cap granted
}

TEST_F(FeatureApi, RetriesAfterATimeout) {
  ScriptedHttpServer server({{Kind::hang, ""}, reply(200, "OK", kFeatureOk)});
  FeatureApiOptions o = options(server);
  const auto clock = std::make_shared<RecordingClock>();
  o.clock = clock;
  FeatureApiClient client(o);
  EXPECT_EQ(client.fetch(kSource, 7), std::optional<std::string>("ok"));
  EXPECT_EQ(clock->waits(), std::vector<double>{o.backoff_initial_s});  // one back-off before the retry
  EXPECT_EQ(client.requests_sent(), 2);
}

TEST_F(FeatureApi, FailsCleanlyWhenEveryAttemptTimesOut) {
  ScriptedHttpServer server({{Kind::hang, ""}, {Kind::hang, ""}});
  FeatureApiOptions o = options(server);
  o.max_attempts = 2;
  const auto clock = std::make_shared<RecordingClock>();
  o.clock = clock;
  FeatureApiClient client(o);
  const std::string message = error_of([&] { client.fetch(kSource, 7); });
  EXPECT_THAT(message, HasSubstr("after 2 attempts; last: Operation timed out"));
  EXPECT_EQ(clock->waits(), std::vector<double>{o.backoff_initial_s});  // no wait after the last attempt
  EXPECT_EQ(client.requests_sent(), 2);
}

TEST_F(FeatureApi, RetriesAfterAConnectionReset) {
  ScriptedHttpServer server({{Kind::reset, ""}, reply(200, "OK", kFeatureOk)});
  FeatureApiClient client(options(server));
  EXPECT_EQ(client.fetch(kSource, 7), std::optional<std::string>("ok"));
  EXPECT_EQ(client.requests_sent(), 2);
}

TEST_F(FeatureApi, RefusesMalformedResponsesWithoutRetrying) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"explanations":[{"description":"cut)", ": not JSON"},
      {"[]", ": expected a JSON object, found array"},
      {R"({"index":"7"})", ": expected an \"explanations\" array, found no such key"},
      {R"({"explanations":{}})", ": expected an \"explanations\" array, found object"},
      {R"({"explanations":["text"]})", ": expected explanations[0] to be an object, found string"},
      {R"({"explanations":[{"description":5}]})",
       " explanations[0]: expected \"description\" to be a string"},
  };
  for (const auto& [body, expected] : cases) {
    ScriptedHttpServer server({reply(200, "OK", body)});
    FeatureApiClient client(options(server));
    const std::string message = error_of([&] { client.fetch(kSource, 7); });
    EXPECT_THAT(message, HasSubstr("response from " + server.base_url() + "/api/feature/")) << body;
    EXPECT_THAT(message, HasSubstr(expected)) << body;
    EXPECT_EQ(client.requests_sent(), 1) << body;
  }
}

TEST_F(FeatureApi, RefusesAResponseOverTheSizeLimit) {
  ScriptedHttpServer server({reply(200, "OK", kFeature42)});
  ExplanationLimits limits;
  limits.max_response_bytes = 64;
  FeatureApiClient client(options(server), limits);
  EXPECT_THAT(error_of([&] { client.fetch(kSource, 42); }), HasSubstr("is larger than the limit of 64 B"));
}

TEST_F(FeatureApi, OtherClientErrorsAreNotRetried) {
  ScriptedHttpServer server({reply(400, "Bad Request", R"({"error":"bad source"})")});
  FeatureApiClient client(options(server));
  EXPECT_THAT(error_of([&] { client.fetch(kSource, 7); }), HasSubstr("HTTP 400 from "));
  EXPECT_EQ(client.requests_sent(), 1);
}

TEST_F(FeatureApi, KeepsTheMinimumIntervalBetweenRequests) {
  ScriptedHttpServer server(
      {reply(200, "OK", kFeatureOk), reply(200, "OK", kFeatureOk), reply(200, "OK", kFeatureOk)});
  FeatureApiOptions o = options(server);
  o.min_interval_s = 0.2;
  const auto clock = std::make_shared<RecordingClock>();
  o.clock = clock;
  FeatureApiClient client(o);
  for (int index = 0; index < 3; ++index)
    EXPECT_EQ(client.fetch(kSource, index), std::optional<std::string>("ok"));
  // The recording clock does not move while a request runs: each later request waits the whole gap.
  ASSERT_EQ(clock->waits().size(), 2u);
  for (double w : clock->waits()) EXPECT_NEAR(w, 0.2, 1e-9);
}

TEST_F(FeatureApi, RefusesABaseUrlThatIsNotHttp) {
  FeatureApiOptions o;
  o.base_url = "file:///etc";
  EXPECT_THAT(error_of([&] { FeatureApiClient client(o); }),
              HasSubstr("must start with http:// or https://"));
}

// ---- the store ----------------------------------------------------------------------------------------

class Store : public FeatureApi {
 protected:
  ExplanationOptions store_options(const ScriptedHttpServer& server) {
    ExplanationOptions o;
    o.bulk_root = bulk.path();
    o.cache_dir = cache.path();
    o.fetch = true;
    o.api = options(server);
    return o;
  }
  TempDir bulk{"saetraj-bulk"};
  TempDir cache{"saetraj-cache"};
};

TEST_F(Store, TakesCacheThenFilesThenApiAndCachesWhatItFetched) {
  ::setenv(kKeyEnv, kSecret, 1);
  const ExplanationCache entries(cache.path());
  entries.store(kSource, 1, {true, "one from cache"});
  entries.store(kSource, 2, {false, ""});  // the API had none; the files do
  const fs::path folder = bulk_explanations_dir(bulk.path(), kSource);
  fs::create_directories(folder);
  write_gzip((folder / "batch-0.jsonl.gz").string(),
             line("2", "two from files") + line("3", "three from files") + line("1", "one from files"));

  std::vector<ExplanationCounts> progress;
  {
    ScriptedHttpServer server({reply(200, "OK", R"({"explanations":[{"description":"four fetched"}]})"),
                               reply(404, "Not Found", "")});
    ExplanationStore store(store_options(server));
    const ExplanationLookup result =
        store.lookup(kSource, {1, 2, 3, 4, 5}, [&](const ExplanationCounts& c) { progress.push_back(c); });
    const std::map<int64_t, std::string> expected{
        {1, "one from cache"}, {2, "two from files"}, {3, "three from files"}, {4, "four fetched"}};
    EXPECT_EQ(result.descriptions, expected);
    EXPECT_EQ(describe(result.counts),
              "5 requested: 1 from cache, 2 from files (1 batch file), 1 fetched, 1 missing");
    const auto requests = server.requests();
    ASSERT_EQ(requests.size(), 2u);
    EXPECT_THAT(requests[0], HasSubstr("GET /api/feature/gemma-2-2b/12-gemmascope-res-65k/4 "));
    EXPECT_THAT(requests[1], HasSubstr("GET /api/feature/gemma-2-2b/12-gemmascope-res-65k/5 "));
  }
  ASSERT_EQ(progress.size(), 2u);
  EXPECT_EQ(progress[0].fetched, 1u);
  EXPECT_EQ(progress[0].missing, 0u);
  EXPECT_EQ(progress[1].missing, 1u);
  EXPECT_EQ(entries.load(kSource, 4)->description, "four fetched");
  EXPECT_FALSE(entries.load(kSource, 5)->has_explanation);
  EXPECT_THAT(read_file(entries.path(kSource, 4)), Not(HasSubstr(kSecret)));

  // A second lookup is answered without a single request.
  ScriptedHttpServer idle({reply(500, "Internal Server Error", "must not be asked")});
  ExplanationStore again(store_options(idle));
  const ExplanationLookup second = again.lookup(kSource, {4, 5});
  EXPECT_EQ(second.descriptions, (std::map<int64_t, std::string>{{4, "four fetched"}}));
  EXPECT_EQ(describe(second.counts),
            "2 requested: 1 from cache, 0 from files (1 batch file), 0 fetched, 1 missing");
  EXPECT_TRUE(idle.requests().empty());
}

TEST_F(Store, WithoutFetchingUnknownFeaturesAreMissingAndNothingIsCached) {
  ScriptedHttpServer idle({reply(500, "Internal Server Error", "must not be asked")});
  ExplanationOptions o = store_options(idle);
  o.fetch = false;
  ExplanationStore store(o);
  const ExplanationLookup result = store.lookup(kSource, {8, 9});
  EXPECT_TRUE(result.descriptions.empty());
  EXPECT_EQ(describe(result.counts),
            "2 requested: 0 from cache, 0 from files (0 batch files), 0 fetched, 2 missing");
  EXPECT_TRUE(idle.requests().empty());
  EXPECT_FALSE(fs::exists(cache.path() + "/gemma-2-2b"));
}

TEST_F(Store, NamesTheFeatureWhenFetchingFails) {
  ScriptedHttpServer server({reply(403, "Forbidden", "")});
  ExplanationStore store(store_options(server));
  const std::string message = error_of([&] { store.lookup(kSource, {11}); });
  EXPECT_THAT(message,
              HasSubstr("while fetching the explanation of feature 11 of gemma-2-2b/12-gemmascope-res-65k"));
  EXPECT_THAT(message, HasSubstr("no API key sent: $SAETRAJ_TEST_NEURONPEDIA_KEY is not set"));
  EXPECT_FALSE(fs::exists(ExplanationCache(cache.path()).path(kSource, 11)));
}


// Runs the saetraj binary with `args` (a shell command line), its stdout and stderr in <dir>/<log>.out and
// .err; returns its exit status.
int run_saetraj(const TempDir& dir, const std::string& args, const std::string& log) {
  const int status = std::system(
      (std::string(SAETRAJ_BINARY) + " " + args + " > " + dir.file(log + ".out") + " 2> " + dir.file(log + ".err"))
          .c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// A small synthetic GPT-2 with `layers` layers in <dir>/fx (SAEs and a Neuronpedia-style export of
// explanations) and its sweep <dir>/s.h5 with `sweep_args` (prompts, --k, --top-t), graphs exported.
::testing::AssertionResult synth_and_sweep(const TempDir& dir, int layers, const std::string& sweep_args) {
  if (run_saetraj(dir,
                  "synth --out " + dir.file("fx") + " --layers " + std::to_string(layers) +
                      " --d-model 32 --d-mlp 64 --vocab 320 --context 48 --d-sae 96",
                  "synth") != 0) {
    return ::testing::AssertionFailure() << "synth failed: " << read_file(dir.file("synth.err"));
  }
  if (run_saetraj(dir,
                  "sweep --model " + dir.file("fx/model") + " --sae '" + dir.file("fx/saes/layer_{layer}") + "' " +
                      sweep_args + " --out " + dir.file("s.h5"),
                  "sweep") != 0) {
    return ::testing::AssertionFailure() << "sweep failed: " << read_file(dir.file("sweep.err"));
  }
  return ::testing::AssertionSuccess();
}

// `explain` after the sweep has exported its graphs: the attribution graphs it exported get the explanations
// as their labels, exactly the files `graph` writes when it runs after `explain`.
TEST(ExplainCommand, LabelsTheAttributionGraphsAlreadyExported) {
  TempDir dir("saetraj-explain-labels");
  auto run = [&](const std::string& args, const std::string& log) { return run_saetraj(dir, args, log); };
  ASSERT_TRUE(synth_and_sweep(dir, 3, "--prompt 'Anna gave the book to Ben' --prompt 'The sun rose over the hills' "
                                     "--k 16 --top-t 8"));
  ASSERT_EQ(run("graph " + dir.file("s.h5") + " --top-t 8 4", "graph-before"), 0)
      << read_file(dir.file("graph-before.err"));
  const std::vector<std::string> graphs = {"T8/attribution_graphs/s-T8-p0000.json",
                                           "T8/attribution_graphs/s-T8-p0001.json",
                                           "T4/attribution_graphs/s-T4-p0000.json",
                                           "T4/attribution_graphs/s-T4-p0001.json"};
  auto labels = [&](const std::string& path) {
    std::map<std::string, std::string> out;  // node_id -> clerp of the feature nodes
    const auto doc = nlohmann::json::parse(read_file(path));
    for (const auto& node : doc.at("nodes")) {
      if (node["feature_type"] == "cross layer transcoder") out[node["node_id"]] = node["clerp"];
    }
    return out;
  };
  int features = 0;
  for (const auto& g : graphs) {
    ASSERT_TRUE(fs::exists(dir.file("s_graphs/" + g))) << g;
    for (const auto& [id, clerp] : labels(dir.file("s_graphs/" + g))) {
      EXPECT_EQ(clerp.rfind("L", 0), 0u) << clerp;  // saetraj's own label: "L<layer> #<feature> from ..."
      ++features;
    }
  }
  ASSERT_GT(features, 10);
  // A copy exported elsewhere with graph --json-dir, relabelled when explain is given that folder.
  ASSERT_EQ(run("graph " + dir.file("s.h5") + " --top-t 8 4 --json-dir " + dir.file("elsewhere"), "graph-elsewhere"), 0)
      << read_file(dir.file("graph-elsewhere.err"));
  // A --json-dir that is not such a folder is refused before anything is written.
  EXPECT_EQ(run("explain " + dir.file("s.h5") + " --bulk-root " + dir.file("fx/explanations") + " --json-dir " +
                    dir.file("nowhere"),
                "explain-nowhere"),
            2);
  EXPECT_THAT(read_file(dir.file("explain-nowhere.err")),
              HasSubstr("--json-dir " + dir.file("nowhere") + ": no such folder (give the folder that graph --json-dir wrote)"));
  EXPECT_EQ(run("explain " + dir.file("s.h5") + " --bulk-root " + dir.file("fx/explanations") + " --json-dir " +
                    dir.file("fx"),
                "explain-fx"),
            2);
  EXPECT_THAT(read_file(dir.file("explain-fx.err")), HasSubstr(" holds no T<T>/attribution_graphs/"));
  ASSERT_EQ(run("explain " + dir.file("s.h5") + " --bulk-root " + dir.file("fx/explanations") + " --json-dir " +
                    dir.file("elsewhere"),
                "explain"),
            0)
      << read_file(dir.file("explain.err"));
  EXPECT_THAT(read_file(dir.file("explain.out")),
              HasSubstr("feature labels set in " + dir.file("elsewhere/T8/attribution_graphs") + "\n"));
  EXPECT_THAT(read_file(dir.file("explain.out")),
              HasSubstr("feature labels set in " + dir.file("s_graphs/T4/attribution_graphs") + "\n"));
  EXPECT_THAT(read_file(dir.file("explain.out")),
              HasSubstr("feature labels set in " + dir.file("s_graphs/T8/attribution_graphs") + "\n"));
  ASSERT_EQ(run("graph " + dir.file("s.h5") + " --top-t 8 4 --json-dir " + dir.file("rebuilt"), "graph"), 0)
      << read_file(dir.file("graph.err"));
  int explained = 0;
  for (const auto& g : graphs) {
    EXPECT_EQ(read_file(dir.file("s_graphs/" + g)), read_file(dir.file("rebuilt/" + g))) << g;
    EXPECT_EQ(read_file(dir.file("elsewhere/" + g)), read_file(dir.file("rebuilt/" + g))) << g;
    for (const auto& [id, clerp] : labels(dir.file("s_graphs/" + g))) explained += clerp.rfind("fires on", 0) == 0;
  }
  EXPECT_GT(explained, 4);  // the synthetic export's descriptions ("fires on ...") are the labels now
}

// The explain command as a user runs it, with the key in $NEURONPEDIA_API_KEY and a server that echoes
// the key in an explanation and in an error body (across the 200-byte cut of the quoted body): the key
// never reaches stdout, stderr, the cache or the
// sweep file, on the failing run or on the successful one.
TEST_F(FeatureApi, ExplainCommandNeverPrintsOrWritesTheKey) {
  TempDir dir("saetraj-key");
  auto run = [&](const std::string& args, const std::string& log) { return run_saetraj(dir, args, log); };
  ASSERT_TRUE(synth_and_sweep(dir, 2, "--prompt 'Anna gave the book to Ben' --k 4 --top-t 3"));
  ::setenv("NEURONPEDIA_API_KEY", kSecret, 1);
  const std::string echoed = std::string(R"({"explanations":[{"description":"key )") + kSecret + "\"}]}";
  const std::string explain = "explain " + dir.file("s.h5") + " --fetch --cache-dir " + dir.file("cache") +
                              " --min-interval 0 --timeout 2 --api-base-url ";
  {
    ScriptedHttpServer server({reply(200, "OK", echoed),
                               reply(401, "Unauthorized", std::string(185, '.') + "bad key " + kSecret)});
    EXPECT_EQ(run(explain + server.base_url(), "failing"), 4);
    EXPECT_THAT(read_file(dir.file("failing.err")), HasSubstr("HTTP 401 from " + server.base_url()));
    EXPECT_THAT(read_file(dir.file("failing.err")), HasSubstr("check the API key in $NEURONPEDIA_API_KEY"));
  }
  {
    std::vector<Step> script = {reply(200, "OK", echoed)};
    for (int i = 0; i < 400; ++i) script.push_back(reply(404, "Not Found", R"({"error":"none"})"));
    ScriptedHttpServer server(script);
    EXPECT_EQ(run(explain + server.base_url(), "working"), 0) << read_file(dir.file("working.err"));
    EXPECT_GE(server.requests().size(), 2u);
  }
  ::unsetenv("NEURONPEDIA_API_KEY");
  int files = 0, redacted = 0;
  for (const auto& entry : fs::recursive_directory_iterator(dir.path())) {
    if (!entry.is_regular_file() || entry.path().string().rfind(dir.file("fx"), 0) == 0) continue;
    const std::string bytes = read_file(entry.path().string());
    ++files;
    redacted += bytes.find("key <api key>") != std::string::npos;
    EXPECT_THAT(bytes, Not(HasSubstr(kSecret))) << entry.path();
    EXPECT_THAT(bytes, Not(HasSubstr(std::string(kSecret).substr(0, 7)))) << entry.path();
  }
  EXPECT_GE(files, 6);     // the logs, the cache entries, the sweep file
  EXPECT_GE(redacted, 2);  // the echoed explanation, in the cache and in the sweep file
}

}  // namespace
}  // namespace saetraj::graph
