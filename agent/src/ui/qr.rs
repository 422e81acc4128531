//! The donor page's address as a QR code drawn in the terminal with half-block characters (two module
//! rows per text line), encoded by the `qrcode` crate. With colour, dark modules are black on a white
//! background, right on any terminal; without colour (serial console, light text on a dark screen) the
//! drawing is inverted so the light modules are the lit characters.

use qrcode::{Color, EcLevel, QrCode};

use super::Style;

/// Modules of light margin around the code (the standard asks for four).
pub const QUIET: usize = 4;

/// The grid of `url` with its quiet zone: `true` is a dark module.
pub fn grid(url: &str) -> Result<Vec<Vec<bool>>, qrcode::types::QrError> {
    let code = QrCode::with_error_correction_level(url.as_bytes(), EcLevel::M)?;
    let width = code.width();
    let colors = code.to_colors();
    let side = width + 2 * QUIET;
    let mut grid = vec![vec![false; side]; side];
    for y in 0..width {
        for x in 0..width {
            grid[y + QUIET][x + QUIET] = colors[y * width + x] == Color::Dark;
        }
    }
    Ok(grid)
}

/// `url` drawn as text, one line per two module rows, each line ending in a newline.
pub fn render(url: &str, style: Style) -> Result<String, qrcode::types::QrError> {
    let grid = grid(url)?;
    let mut out = String::new();
    for pair in grid.chunks(2) {
        let (top, bottom) = (&pair[0], pair.get(1));
        if style.colour {
            out.push_str("\x1b[30;47m");
        }
        for x in 0..top.len() {
            let t = top[x];
            let b = bottom.is_some_and(|row| row[x]);
            // With colour the drawn (foreground) part is dark; without, it is light.
            let (t, b) = if style.colour {
                (t, b)
            } else {
                (!t, bottom.is_some() && !b)
            };
            out.push(match (t, b) {
                (false, false) => ' ',
                (true, false) => '▀',
                (false, true) => '▄',
                (true, true) => '█',
            });
        }
        if style.colour {
            out.push_str("\x1b[0m");
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads a drawing back into dark/light modules, scales each module to 4x4 pixels, and decodes it.
    fn decode(drawing: &str, colour: bool) -> String {
        let mut rows: Vec<Vec<bool>> = Vec::new();
        for line in drawing.lines() {
            let line = line.replace("\x1b[30;47m", "").replace("\x1b[0m", "");
            let (mut top, mut bottom) = (Vec::new(), Vec::new());
            for c in line.chars() {
                let (t, b) = match c {
                    ' ' => (false, false),
                    '▀' => (true, false),
                    '▄' => (false, true),
                    '█' => (true, true),
                    other => panic!("unexpected {other:?}"),
                };
                // Drawn = dark with colour, drawn = light without.
                top.push(if colour { t } else { !t });
                bottom.push(if colour { b } else { !b });
            }
            rows.push(top);
            rows.push(bottom);
        }
        let side = rows[0].len();
        let scale = 4;
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(side * scale, rows.len() * scale, |x, y| {
            if rows[y / scale][x / scale] {
                0
            } else {
                255
            }
        });
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1, "one QR code found");
        grids[0].decode().unwrap().1
    }

    #[test]
    fn the_drawing_decodes_back_to_the_url_in_both_modes() {
        let url = "https://lapterop.example.org/d/0193a7c2-5b1e-7f00-8c2d-3e4f5a6b7c8d";
        for colour in [true, false] {
            let drawing = render(url, Style { colour }).unwrap();
            assert_eq!(decode(&drawing, colour), url, "colour {colour}");
            let side = grid(url).unwrap().len();
            assert_eq!(drawing.lines().count(), side.div_ceil(2));
            // Fits an 80-column console.
            assert!(side <= 80);
        }
    }

    #[test]
    fn quiet_zone_is_light() {
        let g = grid("https://x.example/").unwrap();
        assert!(g[..QUIET].iter().flatten().all(|d| !d));
        assert!(g.iter().all(|row| row[..QUIET].iter().all(|d| !d)));
    }
}
