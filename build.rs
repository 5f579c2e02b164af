//! Builds the default callbacks (weak C symbols), gives libsock.so the
//! second (`__libsock_`) names of its functions, and generates libsock.h.
//!
//! The header is written to `$OUT_DIR/libsock.h`; `make` copies it to
//! `include/libsock.h`, which is committed, and a test fails when the
//! committed copy differs from the generated one.

use std::env;
use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());

    println!("cargo:rerun-if-changed=src/callbacks/defaults.c");
    cc::Build::new()
        .file("src/callbacks/defaults.c")
        .warnings(true)
        .extra_warnings(true)
        .warnings_into_errors(true)
        .compile("sock_callbacks");

    // libsock.so: export the weak default callbacks too (rustc exports only
    // Rust symbols), so a program's definitions interpose on them, and name
    // the library by its ABI version.
    let version = env::var("CARGO_PKG_VERSION").unwrap();
    let major = env::var("CARGO_PKG_VERSION_MAJOR").unwrap();
    let minor = env::var("CARGO_PKG_VERSION_MINOR").unwrap();
    let patch = env::var("CARGO_PKG_VERSION_PATCH").unwrap();
    let map = root.join("src/callbacks/exports.map");
    println!("cargo:rerun-if-changed={}", map.display());
    println!(
        "cargo:rustc-cdylib-link-arg=-Wl,--version-script={}",
        map.display()
    );
    // Every `__libsock_<name>` the map exports is a second name of the
    // library's own `<name>`, made by the linker (an alias: same address).
    // libsock_nonshared.a (src/nonshared.c), linked into programs through
    // the libsock.so linker script, calls these names, which a program's
    // weak fallback of `<name>` cannot shadow.
    let map_text = strip_comments(&std::fs::read_to_string(&map).expect("exports.map"));
    let api: Vec<&str> = map_text
        .split(|c: char| c.is_whitespace() || c == ';')
        .filter_map(|w| w.strip_prefix("__libsock_"))
        .collect();
    assert!(!api.is_empty(), "exports.map names no __libsock_ alias");
    for name in &api {
        println!("cargo:rustc-cdylib-link-arg=-Wl,--defsym=__libsock_{name}={name}");
    }
    // The same names for the shadowing check (src/shadow.rs).
    let list: String = api.iter().map(|n| format!("    c\"{n}\",\n")).collect();
    std::fs::write(
        out.join("api_names.rs"),
        format!("/// The public API names (exports.map's `__libsock_` aliases).\npub const API_NAMES: &[&std::ffi::CStr] = &[\n{list}];\n"),
    )
    .expect("writing api_names.rs");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libsock.so.{major}");

    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=src");
    let mut config =
        cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("cbindgen.toml");
    let fill = |s: &str| {
        s.replace("@VERSION@", &version)
            .replace("@MAJOR@", &major)
            .replace("@MINOR@", &minor)
            .replace("@PATCH@", &patch)
    };
    config.header = config.header.as_deref().map(fill);
    config.trailer = config.trailer.as_deref().map(fill);
    cbindgen::Builder::new()
        .with_crate(&root)
        .with_config(config)
        .generate()
        .expect("generating libsock.h")
        .write_to_file(out.join("libsock.h"));
}

/// `text` without its `/* ... */` comments.
fn strip_comments(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        rest = rest[start..]
            .find("*/")
            .map_or("", |end| &rest[start + end + 2..]);
    }
    out.push_str(rest);
    out
}
