//! Notices, once per process, a program that shadows the library's
//! functions with its own.
//!
//! Event-loop libraries written for libsock carry weak fallbacks of `sock_*`
//! functions. Linked with `-lsock` (the `libsock.so` linker script, which
//! links `libsock_nonshared.a` in) or with `libsock.a`, the library's
//! definitions replace them. Linked against `libsock.so.0` directly
//! (`-l:libsock.so.0`, the file's path), the program keeps its own: its
//! `sock_flush` may do nothing, its `sock_close` may close the fd under the
//! library's queue. Such a definition is in the program's dynamic symbol
//! table (the linker exports it because the shared library defines the same
//! name), so the global lookup of the name finds it ahead of the library.
//!
//! At the first call into the library, [`check_once`] looks every public
//! name up as the dynamic linker would (`dlsym(RTLD_DEFAULT, name)`) and
//! warns once on stderr when the definition found is in another object than
//! this library. The strong definitions of `libsock_nonshared.a` are hidden,
//! so they are never found; a statically linked library is part of the
//! program and finds itself (or nothing).

use std::ffi::{CStr, c_void};
use std::sync::atomic::{AtomicBool, Ordering};

include!(concat!(env!("OUT_DIR"), "/api_names.rs"));

static CLAIMED: AtomicBool = AtomicBool::new(false);

/// Runs [`check`] in the first caller of the process. Other callers never
/// wait for it (a thread inside `dlopen` calling the library from a
/// constructor holds the loader's lock, which the check needs).
#[inline]
pub fn check_once() {
    if !CLAIMED.load(Ordering::Relaxed) && !CLAIMED.swap(true, Ordering::Relaxed) {
        check();
    }
}

/// The base address and file name of the object holding `addr`.
fn object_of(addr: *const c_void) -> Option<(usize, String)> {
    // SAFETY: an all-zero Dl_info is valid (null pointers); dladdr only
    // writes it, and `dli_fname` is NULL or a C string owned by the loader.
    unsafe {
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(addr, &mut info) == 0 {
            return None;
        }
        let name = if info.dli_fname.is_null() {
            String::new()
        } else {
            CStr::from_ptr(info.dli_fname)
                .to_string_lossy()
                .into_owned()
        };
        Some((info.dli_fbase as usize, name))
    }
}

/// The public names that resolve outside this library, with the objects
/// that define them.
pub fn shadowed() -> Vec<(&'static str, String)> {
    let Some((own, _)) = object_of(check as *const c_void) else {
        return Vec::new();
    };
    API_NAMES
        .iter()
        .filter_map(|name| {
            // SAFETY: `name` is NUL-terminated; RTLD_DEFAULT searches the
            // global scope, as the dynamic linker binds the program.
            let found = unsafe { libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr()) };
            if found.is_null() {
                return None;
            }
            match object_of(found) {
                Some((base, file)) if base != own => Some((name.to_str().unwrap_or("?"), file)),
                _ => None,
            }
        })
        .collect()
}

/// The warning for `found` (non-empty): one line.
pub fn message(found: &[(&str, String)]) -> String {
    let names: Vec<&str> = found.iter().map(|(n, _)| *n).collect();
    let mut files: Vec<&str> = found.iter().map(|(_, f)| f.as_str()).collect();
    files.dedup();
    let files: Vec<&str> = files
        .into_iter()
        .map(|f| if f.is_empty() { "the program" } else { f })
        .collect();
    format!(
        "libsock: warning: {} (defined in {}) replace libsock's own: calls bound to them \
         never reach the library. Link with -lsock (libsock.so, a linker script that makes \
         the library's definitions win over weak fallbacks) or libsock.a, not libsock.so.0 \
         itself.\n",
        names.join(", "),
        files.join(", ")
    )
}

fn check() {
    let found = shadowed();
    if found.is_empty() {
        return;
    }
    let msg = message(&found);
    // One write(2): the line is not interleaved with other output, and
    // nothing here can panic on a closed stderr.
    // SAFETY: writing a valid buffer to fd 2; the result does not matter.
    unsafe {
        libc::write(2, msg.as_ptr().cast(), msg.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_forwarded_functions() {
        let names: Vec<&str> = API_NAMES.iter().map(|n| n.to_str().unwrap()).collect();
        assert!(names.contains(&"sock_flush") && names.contains(&"sock_write2_fn"));
        for callback in [
            "reactor_on_close",
            "reactor_remove",
            "sock_touch",
            "async_run",
        ] {
            assert!(
                !names.contains(&callback),
                "{callback} must stay overridable"
            );
        }
    }

    #[test]
    fn a_program_linking_the_library_in_is_not_shadowed() {
        // The test binary holds the library itself (as libsock.a would).
        assert_eq!(shadowed(), Vec::new());
    }

    #[test]
    fn message_names_functions_file_and_fix() {
        let found = [
            ("sock_flush", "/srv/prog".to_string()),
            ("sock_close", "/srv/prog".to_string()),
        ];
        let msg = message(&found);
        assert!(msg.starts_with("libsock: warning: sock_flush, sock_close (defined in /srv/prog)"));
        assert!(msg.contains("-lsock") && msg.ends_with('\n'));
        assert_eq!(msg.matches('\n').count(), 1);
    }
}
