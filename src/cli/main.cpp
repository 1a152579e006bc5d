// saetraj: SAE feature flow through attention, token by token. One binary, subcommands; MPI when started
// by mpirun/srun, a serial communicator otherwise.
#include <torch/torch.h>

#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>

#include "saetraj/cli/commands.h"
#include "saetraj/core/error.h"
#include "saetraj/output/sweep_file.h"
#include "saetraj/pipeline/collective.h"

namespace {

using Command = int (*)(const std::vector<std::string>&, const saetraj::cli::CommandContext&);

const std::map<std::string, std::pair<Command, const char*>>& commands() {
  static const std::map<std::string, std::pair<Command, const char*>> table = {
      {"sweep", {saetraj::cli::cmd_sweep, "run the model, decompose attention, encode, record top-k (HDF5)"}},
      {"graph", {saetraj::cli::cmd_graph, "build trajectory graphs from a sweep file (HDF5 tables, JSON, GraphML)"}},
      {"explain", {saetraj::cli::cmd_explain, "attach Neuronpedia feature explanations to a sweep file"}},
      {"info", {saetraj::cli::cmd_info, "describe a checkpoint folder, an SAE folder or a sweep file"}},
      {"merge", {saetraj::cli::cmd_merge, "merge the shard files of a corpus sweep into one sweep file, in corpus order"}},
      {"index", {saetraj::cli::cmd_index, "a feature index over sweep files: every occurrence of each (layer, feature), aggregates"}},
      {"plan", {saetraj::cli::cmd_plan, "print how ranks would split layers and rows, without running"}},
      {"bench", {saetraj::cli::cmd_bench, "time the encoding kernel on Gemma-shaped random data against sgemm"}},
      {"synth", {saetraj::cli::cmd_synth, "write a synthetic GPT-2 checkpoint with SAEs in the real formats"}},
      {"demo", {saetraj::cli::cmd_demo, "synth + sweep + graphs + explanations + pictures, end to end"}},
      {"forward", {saetraj::cli::cmd_forward, "run the model on token ids; write logits and residuals (safetensors)"}},
      {"encode", {saetraj::cli::cmd_encode, "encode given vectors with one SAE; write the top-k active lists (safetensors)"}},
      {"tokenize", {saetraj::cli::cmd_tokenize, "tokenize a file line by line; write the ids as JSON lines"}},
  };
  return table;
}

void usage(std::ostream& out) {
  out << "saetraj " << SAETRAJ_VERSION << ": SAE feature flow through attention, token by token\n\n"
      << "Usage: saetraj COMMAND [options]     (under MPI: mpirun -n R saetraj COMMAND ...)\n\nCommands:\n";
  for (const auto& [name, entry] : commands()) out << "  " << name << std::string(10 - name.size(), ' ') << entry.second << "\n";
  out << "\nEach command explains its options with --help; every option can also come from --config FILE.\n";
}

int exit_code(const saetraj::Error& e) {
  if (dynamic_cast<const saetraj::InputError*>(&e)) return 2;
  if (dynamic_cast<const saetraj::FormatError*>(&e)) return 3;
  if (dynamic_cast<const saetraj::IoError*>(&e)) return 4;
  if (dynamic_cast<const saetraj::NumericError*>(&e)) return 5;
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    usage(std::cout);
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version") {
    std::cout << "saetraj " << SAETRAJ_VERSION << "\n";
    return 0;
  }
  const auto it = commands().find(args[0]);
  if (it == commands().end()) {
    std::cerr << "saetraj: unknown command '" << args[0] << "'\n\n";
    usage(std::cerr);
    return 2;
  }
  std::string command_line = "saetraj";
  for (const auto& a : args) command_line += " " + a;

  std::unique_ptr<saetraj::dist::Communicator> comm = saetraj::dist::launched_under_mpi()
                                                          ? saetraj::dist::make_world_communicator()
                                                          : saetraj::dist::make_serial_communicator();
  // [NOTE] Threads per rank: OMP_NUM_THREADS when set, else one. OpenBLAS gives slightly different sums for
  // the same product with different thread counts, so byte-identical output across rank counts needs the
  // same threads per rank in every run; use one rank per core (or per GPU) for parallelism.
  if (!std::getenv("OMP_NUM_THREADS")) torch::set_num_threads(1);
  // saetraj reports every HDF5 failure itself, in one line: HDF5's own error stack would only add noise.
  saetraj::output::h5_quiet_errors();
  try {
    const std::vector<std::string> rest(args.begin() + 1, args.end());
    return it->second.first(rest, {*comm, argv[0], command_line});
  } catch (const saetraj::Error& e) {
    if (!e.collective() || comm->rank() == 0) {
      std::cerr << "saetraj: error" << (comm->size() > 1 ? " (rank " + std::to_string(comm->rank()) + ")" : "")
                << ": " << e.what() << "\n";
    }
    // A failure on one rank alone would leave the others waiting in a collective call: end them all.
    if (comm->size() > 1 && !e.collective()) comm->abort(exit_code(e));
    return exit_code(e);
  } catch (const std::filesystem::filesystem_error& e) {
    // A file-system call that no step reworded: which path, and why, as an I/O error (exit 4).
    std::cerr << "saetraj: error" << (comm->size() > 1 ? " (rank " + std::to_string(comm->rank()) + ")" : "")
              << ": " << saetraj::pipeline::describe_filesystem_error(e) << "\n";
    if (comm->size() > 1) comm->abort(4);
    return 4;
  } catch (const std::exception& e) {
    std::cerr << "saetraj: internal error (rank " << comm->rank() << "): " << e.what() << "\n";
    if (comm->size() > 1) comm->abort(1);
    return 1;
  }
}
