// The artifact manifest (docs/artifacts.md): the fields the C++ runtime needs, the payload hash
// check and the compatibility check, with the Python runtime's messages.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace mlffc {

constexpr int kSchemaVersion = 2;
constexpr const char* kManifestFile = "manifest.json";

struct Manifest {
  std::string target;        // target.name
  std::string device;        // target.device
  int threads = 1;           // target.threads
  std::string backend;       // backend.name
  std::string entry;         // backend.entry: the payload file to load
  std::vector<std::string> libraries;  // backend.libraries: op libraries to dlopen before the entry
  std::string built_torch;   // built_on.torch
  std::string built_machine; // built_on.machine
  std::string built_isa;     // built_on.cpu_capability
  std::vector<std::pair<std::string, std::string>> payload;  // file -> SHA-256
  std::vector<int> species;  // model.species
  double cutoff = 0.0;       // model.cutoff, Å
  bool periodic = false;     // capabilities.periodic
  // How many cutoffs an atom's energy reaches (message-passing steps), from model.architecture and
  // model.config: 1 for a strictly local model; 0 when the architecture is not one this runtime knows.
  int interactions = 0;
};

// Reads and validates ARTIFACT/manifest.json; throws mlffc::Error naming the file and field.
Manifest read_manifest(const std::string& artifact);

// ARTIFACT/NAME with symlinks resolved; throws unless NAME is relative and resolves inside ARTIFACT.
std::string member(const std::string& artifact, const std::string& name);

// Every payload file resolves inside the artifact, exists and matches its SHA-256.
void verify_payload(const std::string& artifact, const Manifest& manifest);

// Refuses an artifact this build cannot run, saying what to rebuild.
void check_compatible(const Manifest& manifest);

}  // namespace mlffc
