// mlffc-run: energy, forces and stress of every frame of an XYZ file with a compiled artifact,
// one JSON object per frame on stdout, printed once every frame has succeeded. Exit status 0 on
// success, 2 on bad input or a refused artifact (message on stderr, nothing on stdout), 1 on an
// unexpected failure.
#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <stdexcept>
#include <string>
#include <vector>

#include "mlffc/model.hpp"
#include "xyz.hpp"

namespace {

const char* kUsage =
    "usage: mlffc-run ARTIFACT STRUCTURES.xyz [--threads N] [--repeat K] [--edges]\n"
    "  ARTIFACT        directory written by `mlffc compile`\n"
    "  STRUCTURES.xyz  XYZ or extended XYZ (Lattice=\"...\" pbc=\"T T T\"), one or more frames\n"
    "  --threads N     CPU threads (default: the artifact's)\n"
    "  --repeat K      compute each frame K more times and report median milliseconds\n"
    "  --edges         also print the neighbour list (centre, neighbour, shifts)\n";

struct Options {
  std::string artifact, structures;
  int threads = 0, repeat = 0;
  bool edges = false;
};

int parse_count(const std::string& flag, const char* value) {
  char* end = nullptr;
  long count = std::strtol(value, &end, 10);
  if (*value == '\0' || *end != '\0' || count < 0 || count > 1000000) throw mlffc::Error(flag + " needs a non-negative integer, got '" + value + "'");
  return static_cast<int>(count);
}

Options parse(int argc, char** argv) {
  Options options;
  std::vector<std::string> positional;
  for (int k = 1; k < argc; ++k) {
    std::string arg = argv[k];
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (arg == "--threads" || arg == "--repeat") {
      if (k + 1 >= argc) throw mlffc::Error(arg + " needs a value");
      (arg == "--threads" ? options.threads : options.repeat) = parse_count(arg, argv[++k]);
    } else if (arg == "--edges") {
      options.edges = true;
    } else if (!arg.empty() && arg[0] == '-') {
      throw mlffc::Error("unknown option " + arg);
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() != 2) throw mlffc::Error("expected ARTIFACT and STRUCTURES.xyz");
  options.artifact = positional[0];
  options.structures = positional[1];
  return options;
}

// printf into a string: the output is held until every frame has succeeded.
void print(std::string& out, const char* format, ...) {
  char buffer[256];
  va_list args;
  va_start(args, format);
  int size = std::vsnprintf(buffer, sizeof buffer, format, args);
  va_end(args);
  if (size >= static_cast<int>(sizeof buffer)) throw std::runtime_error("output field too long");
  out.append(buffer, static_cast<std::size_t>(std::max(size, 0)));
}

void print_array(std::string& out, const double* values, int rows, int columns) {
  out += "[";
  for (int r = 0; r < rows; ++r) {
    out += r ? ", [" : "[";
    for (int c = 0; c < columns; ++c) print(out, c ? ", %.17g" : "%.17g", values[r * columns + c]);
    out += "]";
  }
  out += "]";
}

double median_ms(std::vector<double> seconds) {
  std::sort(seconds.begin(), seconds.end());
  return 1e3 * seconds[seconds.size() / 2];
}

std::string run(const Options& options) {
  std::vector<mlffc::Frame> frames = mlffc::read_xyz(options.structures);
  mlffc::Model model(options.artifact, options.threads);
  std::string out;
  for (std::size_t f = 0; f < frames.size(); ++f) {
    const mlffc::Frame& frame = frames[f];
    bool periodic = frame.pbc[0];
    if (frame.pbc[1] != periodic || frame.pbc[2] != periodic) {
      throw mlffc::Error(options.structures + ": frame " + std::to_string(f) + ": partial periodicity is not supported; use all or none");
    }
    auto n = static_cast<int64_t>(frame.species.size());
    mlffc::Result result = model.compute(n, frame.species.data(), frame.positions.data(), frame.cell.data(), periodic);
    print(out, "{\"frame\": %zu, \"atoms\": %lld, \"edges\": %lld, \"energy\": %.17g, \"forces\": ", f, static_cast<long long>(n),
          static_cast<long long>(result.edges), result.energy);
    print_array(out, result.forces.data(), static_cast<int>(n), 3);
    out += ", \"stress\": ";
    print_array(out, result.stress.data(), 3, 3);
    if (options.repeat > 0) {
      std::vector<double> total, neighbours, compiled;
      for (int k = 0; k < options.repeat; ++k) {
        auto timed = model.compute(n, frame.species.data(), frame.positions.data(), frame.cell.data(), periodic);
        total.push_back(timed.neighbours_seconds + timed.model_seconds);
        neighbours.push_back(timed.neighbours_seconds);
        compiled.push_back(timed.model_seconds);
      }
      print(out, ", \"timing\": {\"repeat\": %d, \"compute_ms\": %.6g, \"neighbours_ms\": %.6g, \"model_ms\": %.6g}", options.repeat,
            median_ms(total), median_ms(neighbours), median_ms(compiled));
    }
    if (options.edges) {
      mlffc::Neighbours pairs = mlffc::neighbour_list(n, frame.positions.data(), frame.cell.data(), periodic, model.cutoff());
      out += ", \"neighbours\": {\"centre\": [";
      for (std::size_t e = 0; e < pairs.size(); ++e) print(out, e ? ", %lld" : "%lld", static_cast<long long>(pairs.centre[e]));
      out += "], \"neighbour\": [";
      for (std::size_t e = 0; e < pairs.size(); ++e) print(out, e ? ", %lld" : "%lld", static_cast<long long>(pairs.neighbour[e]));
      out += "], \"shifts\": [";
      for (std::size_t e = 0; e < pairs.size(); ++e) {
        print(out, e ? ", [%d, %d, %d]" : "[%d, %d, %d]", pairs.shifts[3 * e], pairs.shifts[3 * e + 1], pairs.shifts[3 * e + 2]);
      }
      out += "]}";
    }
    out += "}\n";
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::string out = run(parse(argc, argv));
    std::fwrite(out.data(), 1, out.size(), stdout);
    return std::fflush(stdout) == 0 ? 0 : 1;
  } catch (const mlffc::Error& error) {
    std::fprintf(stderr, "mlffc-run: error: %s\n", error.what());
    if (std::string(error.what()).find("expected ARTIFACT") != std::string::npos) std::fputs(kUsage, stderr);
    return 2;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "mlffc-run: unexpected failure: %s\n", error.what());
    return 1;
  }
}
