//! What the builder reads from ELF files, through the `object` crate: the firmware a kernel module
//! names (its `.modinfo` section, what `modinfo -F firmware` prints), whether the agent is a
//! static executable that can run as `/init` of an initramfs with no C library, and what a Debian
//! program needs to run (its ELF interpreter and the shared libraries it names, [`Dynamic`]).

use std::fs;
use std::path::{Path, PathBuf};

use object::elf::{DT_NEEDED, PT_DYNAMIC, PT_INTERP};
use object::read::elf::{Dyn, ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, Object, ObjectSection};

use crate::io::{io_err, IoError};

/// The command that builds the static agent (glibc, `crt-static`); the live image has no C library.
pub const STATIC_AGENT_BUILD: &str =
    "RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release -p lapterop-agent \
     --target x86_64-unknown-linux-gnu (the binary is target/x86_64-unknown-linux-gnu/release/lapterop-agent)";

/// Errors while reading an ELF file.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// The file could not be read.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The file is not an ELF file `object` can read.
    #[error("{path} is not a readable ELF file: {reason}")]
    NotElf {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The agent is not a 64-bit x86 executable.
    #[error("{path} is not an x86_64 Linux executable, so it cannot be the stick's /init; build the agent with: {build}", build = STATIC_AGENT_BUILD)]
    NotX86_64 {
        /// The file.
        path: PathBuf,
    },
    /// The agent is dynamically linked.
    #[error(
        "{path} is dynamically linked ({why}); the live image has no C library, so the stick would not boot. Build the \
         static agent with: {build}",
        build = STATIC_AGENT_BUILD
    )]
    Dynamic {
        /// The file.
        path: PathBuf,
        /// What makes it dynamic (interpreter or needed libraries).
        why: String,
    },
}

type Result<T> = std::result::Result<T, ElfError>;

fn read(path: &Path) -> Result<Vec<u8>> {
    Ok(fs::read(path).map_err(io_err("reading", path))?)
}

fn not_elf(path: &Path) -> impl Fn(object::Error) -> ElfError + '_ {
    move |e| ElfError::NotElf {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// The `firmware=` entries of a module's `.modinfo` section, in file order (a module without the
/// section names none).
pub fn module_firmware(path: &Path) -> Result<Vec<String>> {
    let data = read(path)?;
    let file = object::File::parse(&*data).map_err(not_elf(path))?;
    let Some(section) = file.section_by_name(".modinfo") else {
        return Ok(Vec::new());
    };
    let bytes = section.data().map_err(not_elf(path))?;
    Ok(modinfo_values(bytes, "firmware"))
}

/// The values of `key=` entries in `.modinfo` bytes (NUL-separated `key=value` strings).
pub fn modinfo_values(modinfo: &[u8], key: &str) -> Vec<String> {
    modinfo
        .split(|b| *b == 0)
        .filter_map(|entry| std::str::from_utf8(entry).ok())
        .filter_map(|entry| entry.strip_prefix(key)?.strip_prefix('='))
        .map(str::to_owned)
        .collect()
}

/// What a dynamically linked program or library asks the dynamic linker for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dynamic {
    /// The ELF interpreter (`PT_INTERP`, `/lib64/ld-linux-x86-64.so.2`); libraries have none.
    pub interpreter: Option<String>,
    /// The shared libraries it names (`DT_NEEDED`), in file order.
    pub needed: Vec<String>,
}

/// The interpreter and `DT_NEEDED` entries of the x86_64 ELF file `path` (a static file has neither).
pub fn dynamic(path: &Path) -> Result<Dynamic> {
    let data = read(path)?;
    let elf = ElfFile64::<Endianness>::parse(&*data).map_err(|_| ElfError::NotX86_64 { path: path.to_owned() })?;
    let endian = elf.endian();
    if elf.elf_header().e_machine(endian) != object::elf::EM_X86_64 {
        return Err(ElfError::NotX86_64 { path: path.to_owned() });
    }
    let mut out = Dynamic::default();
    for ph in elf.elf_program_headers() {
        if ph.p_type(endian) == PT_INTERP {
            let interp = ph.data(endian, &*data).map_err(|()| ElfError::NotElf {
                path: path.to_owned(),
                reason: "its PT_INTERP segment lies outside the file".into(),
            })?;
            out.interpreter = Some(String::from_utf8_lossy(interp).trim_end_matches('\0').to_owned());
        }
    }
    // The `.dynamic` section names its string table (`sh_link`), which holds the library names.
    let sections = elf.elf_section_table();
    if let Some((entries, strtab)) = sections.dynamic(endian, &*data).map_err(not_elf(path))? {
        let strings = sections.strings(endian, &*data, strtab).map_err(not_elf(path))?;
        for d in entries {
            if d.d_tag(endian) == u64::from(DT_NEEDED) {
                let name = d.string(endian, strings).map_err(not_elf(path))?;
                out.needed.push(String::from_utf8_lossy(name).into_owned());
            }
        }
    }
    Ok(out)
}

/// Checks that `path` is a static x86_64 executable: no ELF interpreter (`PT_INTERP`) and no shared
/// library it needs (`DT_NEEDED`).
pub fn check_static_executable(path: &Path) -> Result<()> {
    let data = read(path)?;
    let elf = ElfFile64::<Endianness>::parse(&*data).map_err(|_| ElfError::NotX86_64 { path: path.to_owned() })?;
    let endian = elf.endian();
    let header = elf.elf_header();
    if header.e_machine(endian) != object::elf::EM_X86_64 {
        return Err(ElfError::NotX86_64 { path: path.to_owned() });
    }
    let mut why = Vec::new();
    for ph in elf.elf_program_headers() {
        match ph.p_type(endian) {
            PT_INTERP => {
                let interp = ph
                    .data(endian, &*data)
                    .ok()
                    .map(|d| String::from_utf8_lossy(d).trim_end_matches('\0').to_owned())
                    .unwrap_or_default();
                why.push(format!("it asks for the ELF interpreter {interp}"));
            }
            PT_DYNAMIC => {
                let needed = ph
                    .dynamic(endian, &*data)
                    .map_err(not_elf(path))?
                    .unwrap_or_default()
                    .iter()
                    .filter(|d| d.d_tag(endian) == u64::from(DT_NEEDED))
                    .count();
                if needed > 0 {
                    why.push(format!("it needs {needed} shared libraries"));
                }
            }
            _ => {}
        }
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(ElfError::Dynamic {
            path: path.to_owned(),
            why: why.join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modinfo_entries_are_split_on_nul() {
        let section = b"license=GPL\0firmware=rtl_nic/rtl8168d-1.fw\0\0firmware=rtl_nic/rtl8168e-2.fw\0firmwarex=no\0";
        assert_eq!(
            modinfo_values(section, "firmware"),
            ["rtl_nic/rtl8168d-1.fw", "rtl_nic/rtl8168e-2.fw"]
        );
        assert!(modinfo_values(b"license=GPL\0", "firmware").is_empty());
    }

    #[test]
    fn a_debian_program_names_its_interpreter_and_libraries() {
        // /bin/ls of Debian 12 (coreutils): linked against libselinux and glibc.
        let ls = dynamic(Path::new("/bin/ls")).unwrap();
        assert_eq!(ls.interpreter.as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
        assert!(ls.needed.iter().any(|n| n == "libc.so.6"), "{ls:?}");
        assert!(ls.needed.iter().any(|n| n == "libselinux.so.1"), "{ls:?}");
        // A library has no interpreter; glibc's libm names libc and the dynamic linker.
        let libm = dynamic(Path::new("/lib/x86_64-linux-gnu/libm.so.6")).unwrap();
        assert_eq!(libm.interpreter, None);
        assert_eq!(libm.needed, ["libc.so.6", "ld-linux-x86-64.so.2"]);
    }

    #[test]
    fn the_host_tools_are_dynamic_and_text_is_not_elf() {
        // Debian's own binaries are dynamically linked: /bin/ls has an interpreter and needs libc.
        let err = check_static_executable(Path::new("/bin/ls")).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, ElfError::Dynamic { .. }), "{msg}");
        assert!(
            msg.contains("ELF interpreter /lib64/ld-linux-x86-64.so.2") && msg.contains("shared libraries"),
            "{msg}"
        );
        assert!(msg.contains("+crt-static"), "{msg}");
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("agent.sh");
        fs::write(&script, "#!/bin/sh\necho not an agent\n").unwrap();
        assert!(matches!(
            check_static_executable(&script),
            Err(ElfError::NotX86_64 { .. })
        ));
    }
}
