// A small JSON reader for the artifact manifest (the runtime needs a dozen of its fields; the
// wheel's libtorch ships no JSON library and the project vendors nothing large).
// Full JSON syntax (RFC 8259) is parsed, plus Python's NaN and Infinity; numbers become doubles.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace mlffc::json {

struct Value {
  enum class Type { Null, Bool, Number, String, Array, Object };
  Type type = Type::Null;
  bool boolean = false;
  double number = 0.0;
  std::string string;
  std::vector<Value> array;
  std::map<std::string, Value> object;

  // The member at a dotted path ("target.device"), or null when any step is missing.
  const Value* find(const std::string& path) const;
};

// Throws mlffc::Error naming the line and column of the first syntax error.
Value parse(const std::string& text);

}  // namespace mlffc::json
