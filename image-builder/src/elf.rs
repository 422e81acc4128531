//! What the builder reads from ELF files, through the `object` crate: the firmware a kernel module
//! names (its `.modinfo` section, what `modinfo -F firmware` prints), and whether the agent is a
//! static executable that can run as `/init` of an initramfs with no C library, and what a
//! dynamically linked Debian program needs (`crate::tools`).

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

/// What a dynamically linked program asks of the system at run time: its ELF interpreter
/// (`PT_INTERP`, `None` for a static program or a library) and the shared libraries it needs
/// (`DT_NEEDED` of its dynamic section, by soname, in file order).
pub fn dynamic_needs(path: &Path) -> Result<(Option<String>, Vec<String>)> {
    let data = read(path)?;
    let elf = ElfFile64::<Endianness>::parse(&*data).map_err(not_elf(path))?;
    let endian = elf.endian();
    let mut interp = None;
    for ph in elf.elf_program_headers() {
        if ph.p_type(endian) == PT_INTERP {
            interp = ph
                .data(endian, &*data)
                .ok()
                .map(|d| String::from_utf8_lossy(d).trim_end_matches('\0').to_owned());
        }
    }
    let sections = elf.elf_section_table();
    let mut needed = Vec::new();
    if let Some((entries, link)) = sections.dynamic(endian, &*data).map_err(not_elf(path))? {
        let strings = sections.strings(endian, &*data, link).map_err(not_elf(path))?;
        for d in entries.iter().filter(|d| d.d_tag(endian) == u64::from(DT_NEEDED)) {
            let name = d.string(endian, strings).map_err(not_elf(path))?;
            needed.push(String::from_utf8_lossy(name).into_owned());
        }
    }
    Ok((interp, needed))
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
    fn a_dynamic_program_names_its_loader_and_libraries() {
        let (interp, needed) = dynamic_needs(Path::new("/bin/ls")).unwrap();
        assert_eq!(interp.as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
        assert!(needed.iter().any(|n| n == "libc.so.6"), "{needed:?}");
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
