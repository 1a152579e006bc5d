#include "options.h"

#include <fstream>
#include <iostream>

#include "saetraj/core/error.h"

namespace saetraj::cli {

bool parse_command(const std::string& name, const std::string& synopsis, po::options_description& options,
                   const po::positional_options_description& positional, const std::vector<std::string>& args,
                   po::variables_map& vm, bool print_help) {
  po::options_description common("Common options");
  common.add_options()("help,h", "show this help and exit")(
      "config", po::value<std::string>(), "read options from FILE (key = value lines, as in jobs/*.cfg)");
  po::options_description all;
  all.add(options).add(common);
  try {
    po::store(po::command_line_parser(args).options(all).positional(positional).run(), vm);
    if (vm.count("help")) {
      if (print_help) std::cout << "Usage: saetraj " << name << " " << synopsis << "\n\n" << all << "\n";
      return false;
    }
    if (vm.count("config")) {
      const std::string path = vm["config"].as<std::string>();
      std::ifstream in(path);
      SAETRAJ_CHECK(in.good(), InputError, "cannot open config file ", path);
      po::store(po::parse_config_file(in, options), vm);
    }
    po::notify(vm);
  } catch (const po::error& e) {
    // Every rank parses the same command line and fails the same way: rank 0 alone says so.
    InputError error(str("saetraj ", name, ": ", e.what(), " (see saetraj ", name, " --help)"));
    error.set_collective();
    throw error;
  }
  return true;
}

}  // namespace saetraj::cli
