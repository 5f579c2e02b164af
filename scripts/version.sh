# Sourced by the check scripts: the interface version, from Cargo.toml's
# [package] section (the one place it is set), split into its parts.
version=$(awk -F'"' '/^\[/ { pkg = ($0 == "[package]") } pkg && /^version *=/ { print $2; exit }' Cargo.toml)
major=${version%%.*}
minor=${version#*.}; minor=${minor%%.*}
patch=${version##*.}
