//! Generates the ABI checks of `include/libsock.h` against the Rust crate.
//!
//! 1. ctest2: sizes, alignments, field offsets/sizes/types, by-value
//!    round trips of the types in `src/types.rs`, the signature of every
//!    exported function of `src/ffi.rs` and of the callbacks the library calls
//!    (`src/callbacks.rs`), and the macro values (`BUFFER_*` against the Rust
//!    consts, `LIB_SOCK*` against the version in `Cargo.toml`).
//!
//!    ctest2 reads Rust source with an old parser that cannot read the
//!    library's edition-2024 function bodies, so it is given a generated crate
//!    (`$OUT_DIR/ctest-input/`): `src/types.rs` as is, the signatures of the
//!    `#[unsafe(no_mangle)]` functions of `src/ffi.rs` turned into an
//!    `extern "C"` block, the callback declarations of `src/callbacks.rs`, and
//!    the version constants. The same extraction produces
//!    `$OUT_DIR/abi_items.rs` for the test itself, where every extracted
//!    signature is also assigned the real Rust function, so rustc proves that
//!    what ctest2 compared with the header is the library's signature.
//!
//! 2. `c/bits.c`, compiled with `include/libsock.h`: the bit-fields, which
//!    ctest2 cannot address (see `tests/bitfields.rs`). The fields that are
//!    C bit-fields are skipped by ctest2: the ones documented
//!    `cbindgen:bitfield=N` in `src/types.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::env;
use std::fs;
use std::path::{Path, PathBuf};

fn read(path: &Path) -> String {
    println!("cargo:rerun-if-changed={}", path.display());
    fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// `version` of the `[package]` section of a Cargo.toml.
fn package_version(manifest: &str) -> String {
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package {
            if let Some(v) = line.strip_prefix("version") {
                let v = v.trim_start().strip_prefix('=').expect("version = \"..\"");
                return v.trim().trim_matches('"').to_string();
            }
        }
    }
    panic!("no [package] version in Cargo.toml");
}

/// One extracted function: its name and its declaration `fn name(..) -> ..`.
struct Decl {
    name: String,
    decl: String,
}

impl Decl {
    fn parse(text: &str) -> Decl {
        let decl = text.split_whitespace().collect::<Vec<_>>().join(" ");
        let decl = decl
            .trim_start_matches("pub ")
            .trim_start_matches("unsafe ")
            .trim_start_matches("extern \"C\" ")
            .trim_end_matches(';')
            .trim()
            .to_string();
        let name = decl
            .strip_prefix("fn ")
            .and_then(|d| d.split('(').next())
            .unwrap_or_else(|| panic!("not a function declaration: {decl}"))
            .trim()
            .to_string();
        Decl { name, decl }
    }

    /// The declaration as a function pointer type: `fn name(a: T) -> R` to
    /// `unsafe extern "C" fn(a: T) -> R`.
    fn pointer_type(&self) -> String {
        let rest = &self.decl["fn ".len() + self.name.len()..];
        format!("unsafe extern \"C\" fn{rest}")
    }
}

/// The signatures of the `#[unsafe(no_mangle)]` functions of `src/ffi.rs`.
fn exported_fns(src: &str) -> Vec<Decl> {
    let mut out = Vec::new();
    let mut lines = src.lines();
    let mut markers = 0;
    while let Some(line) = lines.next() {
        let t = line.trim();
        if t != "#[unsafe(no_mangle)]" && t != "#[no_mangle]" {
            continue;
        }
        markers += 1;
        // The signature runs up to the `{` that opens the body.
        let mut sig = String::new();
        for l in lines.by_ref() {
            match l.find('{') {
                Some(i) => {
                    sig.push_str(&l[..i]);
                    break;
                }
                None => {
                    sig.push_str(l);
                    sig.push(' ');
                }
            }
        }
        assert!(
            sig.contains("extern \"C\" fn"),
            "#[no_mangle] item that is not an extern \"C\" fn: {sig}"
        );
        out.push(Decl::parse(&sig));
    }
    assert!(
        markers > 0 && out.len() == markers,
        "no exported functions found in src/ffi.rs"
    );
    out
}

/// The functions declared in the `extern "C"` block of `src/callbacks.rs`
/// (the callbacks the library calls), less the library's hidden
/// `sock_default_*` symbols, which are not part of the header.
fn callback_fns(src: &str) -> Vec<Decl> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in src.lines() {
        let t = line.trim();
        if t == "unsafe extern \"C\" {" || t == "extern \"C\" {" {
            inside = true;
        } else if inside && t == "}" {
            inside = false;
        } else if inside
            && (t.starts_with("fn ") || t.starts_with("pub fn "))
            && !t.contains("fn sock_default_")
        {
            out.push(Decl::parse(t));
        }
    }
    assert!(
        !out.is_empty(),
        "no callback declarations found in src/callbacks.rs"
    );
    out
}

/// `pub type Name = ...;` lines of a source file, by name.
fn type_aliases(src: &str) -> BTreeMap<String, String> {
    src.lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("pub type ")?;
            let name = rest
                .split(|c: char| !c.is_alphanumeric() && c != '_')
                .next()?;
            Some((name.to_string(), l.trim().to_string()))
        })
        .collect()
}

/// `[export.rename]` of cbindgen.toml: Rust name -> C name.
fn cbindgen_renames(toml: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inside = false;
    for line in toml.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            inside = t == "[export.rename]";
        } else if inside && t.starts_with('"') {
            let parts: Vec<&str> = t.split('"').collect();
            if parts.len() >= 4 {
                out.insert(parts[1].to_string(), parts[3].to_string());
            }
        }
    }
    out
}

/// (struct, field) pairs that are C bit-fields: the fields documented with
/// `cbindgen:bitfield=N` in src/types.rs.
fn bitfields(types_rs: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let mut current = String::new();
    let mut pending = false;
    for line in types_rs.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("pub struct ") {
            current = rest
                .split(|c: char| !c.is_alphanumeric() && c != '_')
                .next()
                .unwrap_or_default()
                .to_string();
        } else if t.starts_with("///") && t.contains("cbindgen:bitfield=") {
            pending = true;
        } else if pending && t.starts_with("pub ") {
            let field = t["pub ".len()..].split(':').next().unwrap().trim();
            out.insert((current.clone(), field.to_string()));
            pending = false;
        }
    }
    assert!(!out.is_empty(), "no bit-fields found in src/types.rs");
    out
}

fn main() {
    let here = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = here.parent().unwrap().to_path_buf();
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let include = root.join("include");
    let header = include.join("libsock.h");
    println!("cargo:rerun-if-changed={}", header.display());

    let version = package_version(&read(&root.join("Cargo.toml")));
    let parts: Vec<u32> = version
        .split('.')
        .map(|p| p.parse().expect("numeric version"))
        .collect();
    assert_eq!(parts.len(), 3, "version {version} is not MAJOR.MINOR.PATCH");
    let consts = format!(
        "pub const LIB_SOCK: &str = \"{version}\";\n\
         pub const LIB_SOCK_VERSION_MAJOR: c_int = {};\n\
         pub const LIB_SOCK_VERSION_MINOR: c_int = {};\n\
         pub const LIB_SOCK_VERSION_PATCH: c_int = {};\n",
        parts[0], parts[1], parts[2]
    );

    let types_rs = read(&root.join("src/types.rs"));
    let callbacks_rs = read(&root.join("src/callbacks.rs"));
    let exported = exported_fns(&read(&root.join("src/ffi.rs")));
    let callbacks = callback_fns(&callbacks_rs);
    let renames = cbindgen_renames(&read(&root.join("cbindgen.toml")));
    let bits = bitfields(&types_rs);

    // Aliases of src/callbacks.rs that the signatures use (TaskFn).
    let used_aliases: BTreeMap<String, String> = type_aliases(&callbacks_rs)
        .into_iter()
        .filter(|(name, _)| {
            exported.iter().chain(&callbacks).any(|d| {
                d.decl
                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                    .any(|w| w == name)
            })
        })
        .collect();

    // The crate ctest2 parses.
    let input = out.join("ctest-input");
    fs::create_dir_all(&input).unwrap();
    fs::write(input.join("types.rs"), &types_rs).unwrap();
    let mut lib = String::from("pub mod types;\n\n");
    for alias in used_aliases.values() {
        lib.push_str(alias);
        lib.push('\n');
    }
    lib.push('\n');
    lib.push_str(&consts);
    lib.push_str("\nextern \"C\" {\n");
    for d in exported.iter().chain(&callbacks) {
        lib.push_str(&format!("    pub {};\n", d.decl));
    }
    lib.push_str("}\n");
    fs::write(input.join("lib.rs"), lib).unwrap();

    // The items the generated test refers to that the library does not
    // export to Rust, and the signature ties.
    let mut items = String::from(
        "#[allow(unused_imports)]\nuse libc::{c_int, c_uint, c_void, off_t, size_t, ssize_t};\n\
         #[allow(unused_imports)]\nuse std::ffi::c_char;\n\
         #[allow(unused_imports)]\nuse sock::types::*;\n",
    );
    for name in used_aliases.keys() {
        items.push_str(&format!("pub use sock::callbacks::{name};\n"));
    }
    items.push_str(&consts);
    items.push_str("\n// The callbacks (declared, not exported, by src/callbacks.rs).\nunsafe extern \"C\" {\n");
    for d in &callbacks {
        items.push_str(&format!("    pub {};\n", d.decl));
    }
    items.push_str("}\n\n// Each signature given to ctest2 is the Rust definition's.\n");
    for d in &exported {
        items.push_str(&format!(
            "const _: {} = sock::ffi::{};\n",
            d.pointer_type(),
            d.name
        ));
    }
    fs::write(out.join("abi_items.rs"), items).unwrap();

    let mut cfg = ctest2::TestGenerator::new();
    cfg.header("libsock.h")
        .include(&include)
        .flag("-std=c11")
        .flag("-pedantic")
        .type_name(move |ty, is_struct, is_union| {
            let ty = renames.get(ty).map(String::as_str).unwrap_or(ty);
            if is_struct {
                format!("struct {ty}")
            } else if is_union {
                format!("union {ty}")
            } else {
                ty.to_string()
            }
        })
        // SockBit has no C type: it only names a bit-field. fduuid_data_s is
        // the anonymous struct of fduuid_u (bit-fields: see tests/bitfields.rs).
        .skip_struct(|s| s == "SockBit" || s == "fduuid_data_s")
        .skip_field_type(|s, f| s == "fduuid_u" && f == "data")
        .skip_field(move |s, f| bits.contains(&(s.to_string(), f.to_string())));
    cfg.generate(input.join("lib.rs"), "ctest.rs");

    println!("cargo:rerun-if-changed=c/bits.c");
    cc::Build::new()
        .file("c/bits.c")
        .include(&include)
        .flag("-std=c11")
        .flag("-pedantic")
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .compile("abi_bits");
}
