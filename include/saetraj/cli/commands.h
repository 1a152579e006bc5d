// The subcommands of the saetraj binary. Each takes the arguments after its name and returns the exit
// status; errors are thrown as saetraj::Error and reported once, in main.
#pragma once

#include <string>
#include <vector>

#include "saetraj/dist/communicator.h"

namespace saetraj::cli {

struct CommandContext {
  const dist::Communicator& comm;
  std::string program;       // argv[0]
  std::string command_line;  // the whole invocation, for the output's attributes
};

int cmd_sweep(const std::vector<std::string>& args, const CommandContext& ctx);
int cmd_graph(const std::vector<std::string>& args, const CommandContext& ctx);
int cmd_explain(const std::vector<std::string>& args, const CommandContext& ctx);
int cmd_info(const std::vector<std::string>& args, const CommandContext& ctx);
int cmd_merge(const std::vector<std::string>& args, const CommandContext& ctx);
int cmd_index(const std::vector<std::string>& args, const CommandContext& ctx);
int cmd_synth(const std::vector<std::string>& args, const CommandContext& ctx);
int cmd_demo(const std::vector<std::string>& args, const CommandContext& ctx);
int cmd_bench(const std::vector<std::string>& args, const CommandContext& ctx);
int cmd_plan(const std::vector<std::string>& args, const CommandContext& ctx);
int cmd_forward(const std::vector<std::string>& args, const CommandContext& ctx);
int cmd_tokenize(const std::vector<std::string>& args, const CommandContext& ctx);
int cmd_encode(const std::vector<std::string>& args, const CommandContext& ctx);

}  // namespace saetraj::cli
