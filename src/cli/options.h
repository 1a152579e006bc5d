// Boost.Program_options glue shared by the subcommands: --help, --config FILE (the same options as
// key = value lines, as in jobs/*.cfg), and errors turned into InputError.
#pragma once

#include <boost/program_options.hpp>
#include <string>
#include <vector>

namespace saetraj::cli {

namespace po = boost::program_options;

// Parses `args`; returns false when --help was printed. Command-line values win over config-file values.
bool parse_command(const std::string& name, const std::string& synopsis, po::options_description& options,
                   const po::positional_options_description& positional, const std::vector<std::string>& args,
                   po::variables_map& vm, bool print_help);

}  // namespace saetraj::cli
