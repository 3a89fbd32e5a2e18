#include "xyz.hpp"

#include <cctype>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "mlffc/model.hpp"

namespace mlffc {
namespace {

// key=value pairs of an extended XYZ comment line; values may be "quoted"; a bare key is "T".
std::map<std::string, std::string> comment_fields(const std::string& line) {
  std::map<std::string, std::string> fields;
  std::size_t k = 0;
  while (k < line.size()) {
    while (k < line.size() && std::isspace(static_cast<unsigned char>(line[k]))) ++k;
    std::size_t start = k;
    while (k < line.size() && line[k] != '=' && !std::isspace(static_cast<unsigned char>(line[k]))) ++k;
    std::string key = line.substr(start, k - start);
    for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = "T";
    if (k < line.size() && line[k] == '=') {
      ++k;
      if (k < line.size() && line[k] == '"') {
        std::size_t end = line.find('"', k + 1);
        if (end == std::string::npos) end = line.size();
        value = line.substr(k + 1, end - k - 1);
        k = end + 1;
      } else {
        start = k;
        while (k < line.size() && !std::isspace(static_cast<unsigned char>(line[k]))) ++k;
        value = line.substr(start, k - start);
      }
    }
    if (!key.empty()) fields[key] = value;
  }
  return fields;
}

bool parse_flag(const std::string& word, bool& flag) {
  if (word == "T" || word == "True" || word == "true" || word == "1") return flag = true, true;
  if (word == "F" || word == "False" || word == "false" || word == "0") return flag = false, true;
  return false;
}

bool parse_double(const std::string& word, double& value) {
  char* end = nullptr;
  value = std::strtod(word.c_str(), &end);
  return !word.empty() && end == word.c_str() + word.size();
}

}  // namespace

std::vector<Frame> read_xyz(const std::string& path) {
  std::ifstream file(path);
  if (!file) throw Error("cannot read " + path);
  std::vector<Frame> frames;
  std::string line;
  std::size_t number = 0;
  auto fail = [&](const std::string& what) { throw Error(path + ":" + std::to_string(number) + ": " + what); };
  while (std::getline(file, line)) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // blank lines between frames
    char* end = nullptr;
    long count = std::strtol(line.c_str(), &end, 10);
    if (end == line.c_str() || count <= 0 || std::string(end).find_first_not_of(" \t\r") != std::string::npos) {
      fail("expected the number of atoms, got '" + line + "'");
    }
    Frame frame;
    if (!std::getline(file, line)) fail("missing the comment line");
    ++number;
    auto fields = comment_fields(line);
    // Column of the species and of x in each atom line (Properties=species:S:1:pos:R:3:...).
    int species_column = 0, position_column = 1, columns = 0;
    if (fields.count("properties")) {
      std::stringstream spec(fields["properties"]);
      std::string name, type, width;
      species_column = position_column = -1;
      while (std::getline(spec, name, ':') && std::getline(spec, type, ':') && std::getline(spec, width, ':')) {
        if (name == "species") species_column = columns;
        if (name == "pos") position_column = columns;
        columns += std::atoi(width.c_str());
      }
      if (species_column < 0 || position_column < 0) fail("Properties names no 'species' or no 'pos' column");
    }
    if (fields.count("lattice")) {
      std::stringstream values(fields["lattice"]);
      std::string word;
      for (int k = 0; k < 9; ++k) {
        if (!(values >> word) || !parse_double(word, frame.cell[k])) fail("Lattice needs 9 numbers");
      }
      frame.pbc = {true, true, true};
    }
    if (fields.count("pbc")) {
      std::stringstream values(fields["pbc"]);
      std::string word;
      for (int k = 0; k < 3; ++k) {
        if (!(values >> word) || !parse_flag(word, frame.pbc[k])) fail("pbc needs 3 flags (T or F)");
      }
      if ((frame.pbc[0] || frame.pbc[1] || frame.pbc[2]) && !fields.count("lattice")) fail("periodic frame without a Lattice");
    }
    for (long a = 0; a < count; ++a) {
      if (!std::getline(file, line)) fail("file ends after " + std::to_string(a) + " of " + std::to_string(count) + " atoms");
      ++number;
      std::stringstream words(line);
      std::vector<std::string> row;
      std::string word;
      while (words >> word) row.push_back(word);
      if (static_cast<int>(row.size()) < std::max(columns, std::max(species_column + 1, position_column + 3))) fail("too few columns");
      const std::string& symbol = row[species_column];
      int z = atomic_number(symbol);
      if (z == 0) {
        double value;
        if (!parse_double(symbol, value) || value != static_cast<int>(value) || value < 1 || value > 118) {
          fail("unknown element '" + symbol + "'");
        }
        z = static_cast<int>(value);
      }
      frame.species.push_back(z);
      for (int d = 0; d < 3; ++d) {
        double x;
        if (!parse_double(row[position_column + d], x)) fail("bad coordinate '" + row[position_column + d] + "'");
        frame.positions.push_back(x);
      }
    }
    frames.push_back(std::move(frame));
  }
  if (frames.empty()) throw Error(path + ": no structures in the file");
  return frames;
}

}  // namespace mlffc
