//! The QEMU Machine Protocol, for what a volunteer does at the laptop: keys pressed on its own
//! keyboard ([`Qmp::type_text`], through `send-key` to the emulated PS/2 keyboard) and what its own
//! screen shows ([`Qmp::screen_text`]: a `screendump` of the VGA output read back into text).
//!
//! The screen is read exactly, without OCR: in VGA text mode QEMU draws each character cell from the
//! font the VGA BIOS loaded into the card (SeaBIOS's `vgabios-stdvga.bin`, 8x16 glyphs, drawn 9 dots
//! wide). [`VgaFont::from_rom`] takes that font from the same ROM file QEMU loads, and
//! [`VgaFont::decode`] matches every 9x16 cell of the picture against it, so the text read is the text
//! on the screen, cell for cell. A cell that matches no glyph (the blinking cursor, a picture) reads as
//! `?`.

use lapterop_certificate::io::io_err;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::vm::VmError;

/// SeaBIOS's VGA BIOS for QEMU's standard VGA, as Debian's `seabios` package installs it (QEMU loads
/// this file for `-vga std`).
pub const VGA_ROM: &str = "/usr/share/seabios/vgabios-stdvga.bin";

fn qmp_err(what: String) -> VmError {
    VmError::Spec(format!("QMP: {what}"))
}

/// A QMP connection to one QEMU.
#[derive(Debug)]
pub struct Qmp {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Qmp {
    /// Connects to the QMP socket at `path` (QEMU started with `-qmp unix:PATH,server=on,wait=off`),
    /// waiting up to `timeout` for QEMU to create it, and enters command mode.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp, VmError> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => {
                    return Err(qmp_err(format!("connecting to {}: {e}", path.display())))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .map_err(|e| qmp_err(e.to_string()))?;
        let reader = BufReader::new(stream.try_clone().map_err(|e| qmp_err(e.to_string()))?);
        let mut qmp = Qmp { writer: stream, reader };
        let greeting = qmp.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(qmp_err(format!("no greeting, got {greeting}")));
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    fn read_message(&mut self) -> Result<Value, VmError> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| qmp_err(format!("reading: {e}")))?;
        if n == 0 {
            return Err(qmp_err("QEMU closed the connection".into()));
        }
        serde_json::from_str(&line).map_err(|e| qmp_err(format!("bad message {line:?}: {e}")))
    }

    /// Runs one command and returns its `return` value (events on the way are skipped).
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, VmError> {
        let msg = json!({ "execute": command, "arguments": arguments });
        writeln!(self.writer, "{msg}").map_err(|e| qmp_err(format!("sending {command}: {e}")))?;
        loop {
            let reply = self.read_message()?;
            if let Some(r) = reply.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = reply.get("error") {
                return Err(qmp_err(format!("{command}: {e}")));
            }
        }
    }

    /// Presses and releases one key combination (QEMU qcodes, e.g. `["shift", "a"]`).
    pub fn send_key(&mut self, qcodes: &[&str]) -> Result<(), VmError> {
        let keys: Vec<Value> = qcodes.iter().map(|k| json!({ "type": "qcode", "data": k })).collect();
        self.execute("send-key", json!({ "keys": keys, "hold-time": 60 }))?;
        Ok(())
    }

    /// Types `text` on the laptop's keyboard (US layout; `\n` is Enter), a key at a time.
    pub fn type_text(&mut self, text: &str) -> Result<(), VmError> {
        for c in text.chars() {
            let keys = qcodes_of(c).ok_or_else(|| qmp_err(format!("no key for {c:?}")))?;
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            self.send_key(&keys)?;
            // The guest under TCG needs a moment per key, like a person typing.
            std::thread::sleep(Duration::from_millis(40));
        }
        Ok(())
    }

    /// Writes the screen as a PPM picture to `file` (QEMU's `screendump`).
    pub fn screendump(&mut self, file: &Path) -> Result<(), VmError> {
        let _ = std::fs::remove_file(file);
        self.execute("screendump", json!({ "filename": file.display().to_string() }))?;
        Ok(())
    }

    /// The text on the laptop's screen now: a screendump to `file`, read back with `font`.
    pub fn screen_text(&mut self, font: &VgaFont, file: &Path) -> Result<String, VmError> {
        self.screendump(file)?;
        let ppm = std::fs::read(file).map_err(io_err("reading", file))?;
        let picture = Ppm::parse(&ppm).ok_or_else(|| qmp_err(format!("{} is not a P6 picture", file.display())))?;
        Ok(font.decode(&picture))
    }
}

/// The QEMU qcodes that type `c` on a US keyboard.
pub fn qcodes_of(c: char) -> Option<Vec<String>> {
    let plain = |k: &str| Some(vec![k.to_owned()]);
    let shifted = |k: &str| Some(vec!["shift".to_owned(), k.to_owned()]);
    match c {
        'a'..='z' | '0'..='9' => plain(&c.to_string()),
        'A'..='Z' => shifted(&c.to_ascii_lowercase().to_string()),
        ' ' => plain("spc"),
        '\n' => plain("ret"),
        '-' => plain("minus"),
        '.' => plain("dot"),
        ',' => plain("comma"),
        '/' => plain("slash"),
        '@' => shifted("2"),
        _ => None,
    }
}

/// A P6 (binary RGB) PPM picture, as `screendump` writes it.
#[derive(Debug, Clone)]
pub struct Ppm {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// RGB triples, row by row.
    pub rgb: Vec<u8>,
}

impl Ppm {
    /// Parses a `P6` file with a maximum value of 255.
    pub fn parse(bytes: &[u8]) -> Option<Ppm> {
        // Header: "P6", width, height, maxval, separated by whitespace, then one whitespace byte.
        let mut fields = Vec::new();
        let mut i = 0;
        while fields.len() < 4 {
            while bytes.get(i)?.is_ascii_whitespace() {
                i += 1;
            }
            let start = i;
            while !bytes.get(i)?.is_ascii_whitespace() {
                i += 1;
            }
            fields.push(std::str::from_utf8(&bytes[start..i]).ok()?.to_owned());
        }
        i += 1;
        if fields[0] != "P6" || fields[3] != "255" {
            return None;
        }
        let width: usize = fields[1].parse().ok()?;
        let height: usize = fields[2].parse().ok()?;
        let rgb = bytes.get(i..i + width * height * 3)?.to_vec();
        Some(Ppm { width, height, rgb })
    }

    fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let o = (y * self.width + x) * 3;
        [self.rgb[o], self.rgb[o + 1], self.rgb[o + 2]]
    }
}

/// The VGA BIOS's 8x16 font: 256 glyphs of 16 rows, one byte a row (bit 7 is the leftmost dot).
#[derive(Debug, Clone)]
pub struct VgaFont {
    glyphs: Vec<[u8; 16]>,
}

/// The IBM VGA glyph of `A` (0x41), as every VGA BIOS font has it: used to find the font in the ROM.
const GLYPH_A: [u8; 16] = [
    0x00, 0x00, 0x10, 0x38, 0x6c, 0xc6, 0xc6, 0xfe, 0xc6, 0xc6, 0xc6, 0xc6, 0x00, 0x00, 0x00, 0x00,
];

/// Accented letters of code page 437 (the order of the VGA font) and the characters they show.
const CP437_LETTERS: &[(u8, char)] = &[
    (0x81, 'ü'),
    (0x82, 'é'),
    (0x83, 'â'),
    (0x84, 'ä'),
    (0x85, 'à'),
    (0x87, 'ç'),
    (0x88, 'ê'),
    (0x89, 'ë'),
    (0x8a, 'è'),
    (0x8b, 'ï'),
    (0x8c, 'î'),
    (0x93, 'ô'),
    (0x94, 'ö'),
    (0x96, 'û'),
    (0x97, 'ù'),
];

impl VgaFont {
    /// Finds the 8x16 font in a VGA BIOS ROM (by its `A` glyph, 0x41 glyphs after the font's start).
    pub fn from_rom(rom: &[u8]) -> Option<VgaFont> {
        let at = rom.windows(16).position(|w| w == GLYPH_A)?;
        let start = at.checked_sub(0x41 * 16)?;
        let font = rom.get(start..start + 256 * 16)?;
        let glyphs = font
            .chunks_exact(16)
            .map(|g| {
                let mut a = [0u8; 16];
                a.copy_from_slice(g);
                a
            })
            .collect();
        Some(VgaFont { glyphs })
    }

    /// The font of [`VGA_ROM`]; fails with what to install when it is missing.
    pub fn system() -> Result<VgaFont, VmError> {
        let path = PathBuf::from(VGA_ROM);
        let rom = std::fs::read(&path).map_err(io_err("reading QEMU's VGA BIOS (Debian package seabios)", &path))?;
        VgaFont::from_rom(&rom).ok_or_else(|| VmError::Spec(format!("no 8x16 VGA font found in {}", path.display())))
    }

    /// Reads a text-mode picture (cells 9 or 8 dots wide, 16 high) back into lines of text; trailing
    /// spaces are dropped. A picture that is not text mode reads as an empty string.
    pub fn decode(&self, picture: &Ppm) -> String {
        let cell_w = match picture.width {
            720 => 9,
            640 => 8,
            _ => return String::new(),
        };
        if picture.height % 16 != 0 {
            return String::new();
        }
        let (cols, rows) = (picture.width / cell_w, picture.height / 16);
        let mut out = String::new();
        for row in 0..rows {
            let mut line = String::new();
            for col in 0..cols {
                line.push(self.cell(picture, col * cell_w, row * 16));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// The character whose glyph draws the cell at (`x`, `y`): its dots are the pixels that differ from
    /// the cell's background colour (its most common colour).
    fn cell(&self, p: &Ppm, x: usize, y: usize) -> char {
        let mut counts: Vec<([u8; 3], usize)> = Vec::new();
        for dy in 0..16 {
            for dx in 0..8 {
                let px = p.pixel(x + dx, y + dy);
                match counts.iter_mut().find(|(c, _)| *c == px) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((px, 1)),
                }
            }
        }
        let Some(background) = counts.iter().max_by_key(|(_, n)| *n).map(|(c, _)| *c) else {
            return '?';
        };
        if counts.len() == 1 {
            return ' ';
        }
        let mut dots = [0u8; 16];
        for (dy, row) in dots.iter_mut().enumerate() {
            for dx in 0..8 {
                if p.pixel(x + dx, y + dy) != background {
                    *row |= 0x80 >> dx;
                }
            }
        }
        // Printable ASCII, then the accented letters of code page 437 (the VGA font's own order) that
        // Dutch and French screens use.
        if let Some(c) = (0x21u8..0x7f).find(|&c| self.glyphs[usize::from(c)] == dots) {
            return char::from(c);
        }
        CP437_LETTERS
            .iter()
            .find(|(at, _)| self.glyphs[usize::from(*at)] == dots)
            .map_or('?', |(_, c)| *c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A picture of `text` drawn with `font` the way QEMU draws text mode (9-dot cells, the ninth dot
    /// blank for letters), white on black.
    fn draw(font: &VgaFont, lines: &[&str], cols: usize) -> Ppm {
        let (w, h) = (cols * 9, lines.len() * 16);
        let mut rgb = vec![0u8; w * h * 3];
        for (row, line) in lines.iter().enumerate() {
            for (col, c) in line.chars().enumerate() {
                let at = CP437_LETTERS
                    .iter()
                    .find(|(_, l)| *l == c)
                    .map_or(c as usize, |(at, _)| usize::from(*at));
                let glyph = font.glyphs[at];
                for (dy, bits) in glyph.iter().enumerate() {
                    for dx in 0..8 {
                        if bits & (0x80 >> dx) != 0 {
                            let o = ((row * 16 + dy) * w + col * 9 + dx) * 3;
                            rgb[o..o + 3].copy_from_slice(&[0xaa, 0xaa, 0xaa]);
                        }
                    }
                }
            }
        }
        Ppm {
            width: w,
            height: h,
            rgb,
        }
    }

    #[test]
    fn ppm_header_and_pixels() {
        let mut bytes = b"P6\n2 1\n255\n".to_vec();
        bytes.extend([1, 2, 3, 4, 5, 6]);
        let p = Ppm::parse(&bytes).unwrap();
        assert_eq!((p.width, p.height), (2, 1));
        assert_eq!(p.pixel(1, 0), [4, 5, 6]);
        assert!(Ppm::parse(b"P5\n2 1\n255\n\x00\x00").is_none());
        assert!(Ppm::parse(b"P6\n2 1\n255\n\x00").is_none(), "short data");
    }

    #[test]
    fn us_keys() {
        assert_eq!(qcodes_of('E').unwrap(), ["shift", "e"]);
        assert_eq!(qcodes_of('\n').unwrap(), ["ret"]);
        assert_eq!(qcodes_of('7').unwrap(), ["7"]);
        assert!(qcodes_of('é').is_none());
    }

    #[test]
    fn the_screen_reads_back_as_its_text_with_the_roms_font() {
        let Ok(font) = VgaFont::system() else {
            crate::skip(
                "the_screen_reads_back_as_its_text_with_the_roms_font",
                &format!("{VGA_ROM} is missing (Debian package seabios)"),
            );
            return;
        };
        let lines = [
            "RESULT  vda  ERASED",
            "Geen software geïnstalleerd, [ok] 64.0 MB; é è ü",
        ];
        // 80 columns x 2 rows is not a screen size: pad to 80x25 the way the VGA shows it.
        let mut screen: Vec<&str> = lines.to_vec();
        screen.resize(25, "");
        let picture = draw(&font, &screen, 80);
        let text = font.decode(&picture);
        assert_eq!(text.lines().next().unwrap(), lines[0]);
        assert_eq!(text.lines().nth(1).unwrap(), lines[1]);
        assert_eq!(text.lines().count(), 25);
        assert_eq!(text.lines().nth(2).unwrap(), "", "an empty row reads as empty");
    }
}
