#include "manifest.hpp"

#include <sys/stat.h>
#include <sys/utsname.h>

#include <ATen/Version.h>
#include <torch/headeronly/version.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <memory>
#include <cmath>
#include <fstream>
#include <sstream>

#include "json.hpp"
#include "mlffc/model.hpp"
#include "sha256.hpp"

namespace mlffc {
namespace {

bool is_directory(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

bool is_file(const std::string& path) {
  struct stat info;
  return stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode);
}

class Fields {
 public:
  Fields(const json::Value& root, std::string path) : root_(root), path_(std::move(path)) {}

  const json::Value& get(const std::string& key, json::Value::Type type, const char* type_name) const {
    const json::Value* value = root_.find(key);
    if (value == nullptr) throw Error(path_ + ": manifest has no '" + key + "'");
    if (value->type != type) throw Error(path_ + ": manifest field '" + key + "' is not " + type_name);
    return *value;
  }
  std::string string(const std::string& key) const { return get(key, json::Value::Type::String, "a string").string; }
  double number(const std::string& key) const { return get(key, json::Value::Type::Number, "a number").number; }
  int integer(const std::string& key) const {
    double value = number(key);
    if (value != std::floor(value) || std::abs(value) > 1e9) throw Error(path_ + ": manifest field '" + key + "' is not an integer");
    return static_cast<int>(value);
  }
  bool boolean(const std::string& key) const { return get(key, json::Value::Type::Bool, "true or false").boolean; }
  const json::Value& object(const std::string& key) const { return get(key, json::Value::Type::Object, "an object"); }
  const json::Value& array(const std::string& key) const { return get(key, json::Value::Type::Array, "an array"); }

 private:
  const json::Value& root_;
  std::string path_;
};

// The CPU vector ISAs in increasing order, as torch.backends.cpu.get_cpu_capability() names them.
int cpu_level(const std::string& capability) {
  static const char* levels[] = {"DEFAULT", "VSX", "Z VECTOR", "NO AVX", "AVX2", "AVX512", "SVE256"};
  for (int k = 0; k < 7; ++k) {
    if (capability == levels[k]) return k;
  }
  return 0;
}

std::string release(const std::string& version) { return version.substr(0, version.find('+')); }

// A manifest never holds NaN or infinity (docs/artifacts.md): refuse one anywhere, named by its
// path as the Python reader names it (accuracy.vs_eager.tolerance.forces, model.species[1]).
void check_finite(const json::Value& value, const std::string& where, const std::string& path) {
  if (value.type == json::Value::Type::Number && !std::isfinite(value.number)) {
    std::string shown = std::isnan(value.number) ? "nan" : (value.number > 0 ? "inf" : "-inf");
    throw Error(path + ": manifest field " + where + " is " + shown + " (every number in a manifest must be finite)");
  }
  if (value.type == json::Value::Type::Array) {
    for (std::size_t k = 0; k < value.array.size(); ++k) check_finite(value.array[k], where + "[" + std::to_string(k) + "]", path);
  }
  if (value.type == json::Value::Type::Object) {
    for (const auto& [key, child] : value.object) check_finite(child, where.empty() ? key : where + "." + key, path);
  }
}

}  // namespace

Manifest read_manifest(const std::string& artifact) {
  if (!is_directory(artifact)) throw Error("artifact not found: " + artifact);
  std::string path = artifact + "/" + kManifestFile;
  if (!is_file(path)) throw Error(artifact + " is not an mlffc artifact: it has no " + kManifestFile);
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  if (!file) throw Error("cannot read " + path);
  json::Value root;
  try {
    root = json::parse(text.str());
  } catch (const Error& error) {
    throw Error(path + " is not valid JSON: " + error.what());
  }
  if (root.type != json::Value::Type::Object) throw Error(path + " is not a JSON object");
  Fields fields(root, path);
  int version = fields.integer("schema_version");
  if (version > kSchemaVersion) {
    throw Error(artifact + ": manifest schema " + std::to_string(version) + " is newer than this runtime reads (" +
                std::to_string(kSchemaVersion) + "); upgrade mlffc");
  }
  if (version < kSchemaVersion) {
    throw Error(artifact + ": manifest schema " + std::to_string(version) + " is older than this runtime reads (" +
                std::to_string(kSchemaVersion) + "); recompile the artifact");
  }
  check_finite(root, "", path);
  Manifest manifest;
  manifest.target = fields.string("target.name");
  manifest.device = fields.string("target.device");
  if (manifest.device != "cpu" && manifest.device != "cuda") throw Error(path + ": target.device must be cpu or cuda, got '" + manifest.device + "'");
  manifest.threads = fields.integer("target.threads");
  if (manifest.threads < 1) throw Error(path + ": target.threads must be >= 1, got " + std::to_string(manifest.threads));
  manifest.backend = fields.string("backend.name");
  manifest.entry = fields.string("backend.entry");
  for (const auto& name : fields.array("backend.libraries").array) {
    if (name.type != json::Value::Type::String) throw Error(path + ": backend.libraries holds something other than file names");
    manifest.libraries.push_back(name.string);
  }
  manifest.built_torch = fields.string("built_on.torch");
  manifest.built_machine = fields.string("built_on.machine");
  manifest.built_isa = fields.string("built_on.cpu_capability");
  for (const auto& [name, digest] : fields.object("payload").object) {
    if (digest.type != json::Value::Type::String) throw Error(path + ": payload hash of " + name + " is not a string");
    manifest.payload.emplace_back(name, digest.string);
  }
  for (const auto& z : fields.array("model.species").array) {
    if (z.type != json::Value::Type::Number || z.number != std::floor(z.number) || z.number < 1 || z.number > 118) {
      throw Error(path + ": model.species holds something other than atomic numbers");
    }
    manifest.species.push_back(static_cast<int>(z.number));
  }
  manifest.cutoff = fields.number("model.cutoff");
  if (!(manifest.cutoff > 0) || !std::isfinite(manifest.cutoff)) throw Error(path + ": model.cutoff must be finite and positive");
  manifest.periodic = fields.boolean("capabilities.periodic");
  // the students' depths (toolchain/students): behler is local; moment has config.interactions
  // steps and painn config.layers
  std::string architecture = fields.string("model.architecture");
  if (architecture == "behler") {
    manifest.interactions = 1;
  } else if (architecture == "moment" || architecture == "painn") {
    manifest.interactions = fields.integer(architecture == "moment" ? "model.config.interactions" : "model.config.layers");
    if (manifest.interactions < 1) throw Error(path + ": the model's message-passing depth must be >= 1");
  }
  bool listed = std::any_of(manifest.payload.begin(), manifest.payload.end(), [&](const auto& p) { return p.first == manifest.entry; });
  if (!listed) throw Error(path + ": the backend entry " + manifest.entry + " has no hash in payload");
  for (const auto& library : manifest.libraries) {
    bool hashed = std::any_of(manifest.payload.begin(), manifest.payload.end(), [&](const auto& p) { return p.first == library; });
    if (!hashed) throw Error(path + ": the op library " + library + " has no hash in payload");
  }
  return manifest;
}

std::string member(const std::string& artifact, const std::string& name) {
  if (name.empty() || name[0] == '/' || name.find('\0') != std::string::npos) {
    throw Error(artifact + ": manifest names the file '" + name + "'; only relative names inside the artifact are allowed");
  }
  std::unique_ptr<char, decltype(&std::free)> root(realpath(artifact.c_str(), nullptr), &std::free);
  if (!root) throw Error("artifact not found: " + artifact);
  std::string path = artifact + "/" + name;
  std::unique_ptr<char, decltype(&std::free)> resolved(realpath(path.c_str(), nullptr), &std::free);
  if (!resolved) throw Error(artifact + ": payload file " + name + " is missing");
  std::string prefix = std::string(root.get()) + "/";
  if (std::string(resolved.get()).compare(0, prefix.size(), prefix) != 0) {
    throw Error(artifact + ": manifest file '" + name + "' resolves to " + resolved.get() + ", outside the artifact directory: refused");
  }
  return resolved.get();
}

void verify_payload(const std::string& artifact, const Manifest& manifest) {
  for (const auto& [name, expected] : manifest.payload) {
    std::string path = member(artifact, name);
    if (!is_file(path)) throw Error(artifact + ": payload file " + name + " is missing");
    if (sha256_file(path) != expected) {
      throw Error(artifact + ": payload file " + name + " does not match its SHA-256 in the manifest (modified or corrupt)");
    }
  }
}

void check_compatible(const Manifest& manifest) {
  std::string rebuild = "rebuild it here with `mlffc compile --target " + manifest.target + "`";
  if (manifest.device != "cpu") {
    throw Error("artifact targets " + manifest.target + " (" + manifest.device +
                "); the C++ runtime runs cpu artifacts: rebuild with `mlffc compile --target cpu`");
  }
  if (manifest.backend != "aoti") {
    throw Error("artifact backend '" + manifest.backend + "' has no loader in the C++ runtime (aoti only); " + rebuild);
  }
  if (release(manifest.built_torch) != release(TORCH_VERSION)) {
    throw Error("artifact built with torch " + manifest.built_torch + ", this runtime links torch " + TORCH_VERSION + ": " +
                rebuild + " (or rebuild the C++ runtime against torch " + release(manifest.built_torch) + ")");
  }
  struct utsname host;
  uname(&host);
  if (manifest.built_machine != host.machine) {
    throw Error("artifact built for " + manifest.built_machine + " CPUs, this machine is " + host.machine + ": " + rebuild);
  }
  std::string here = at::get_cpu_capability();
  if (cpu_level(manifest.built_isa) > cpu_level(here)) {
    throw Error("artifact uses " + manifest.built_isa + " instructions, this CPU offers " + here + ": " + rebuild);
  }
}

}  // namespace mlffc
