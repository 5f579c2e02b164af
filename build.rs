//! Builds the default callbacks (weak C symbols) and generates libsock.h.
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
