//! Draws the app's icons (for the web app manifest and home screens) from the mark
//! in `public/favicon.svg`, so there is one picture to change. Only the server
//! serves them, so only its build (feature `ssr`) draws them.

fn main() {
    println!("cargo::rerun-if-changed=public/favicon.svg");
    #[cfg(feature = "ssr")]
    icons::draw();
}

#[cfg(feature = "ssr")]
mod icons {
    use std::path::PathBuf;

    /// The sizes a manifest needs: 192 for home screens, 512 for splash screens
    /// and stores.
    const SIZES: [u32; 2] = [192, 512];

    pub fn draw() {
        let svg = std::fs::read("public/favicon.svg").expect("public/favicon.svg is the mark");
        let tree = resvg::usvg::Tree::from_data(&svg, &resvg::usvg::Options::default())
            .expect("public/favicon.svg is an SVG");
        let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
        for size in SIZES {
            let mut pixmap = resvg::tiny_skia::Pixmap::new(size, size).expect("an icon has a size");
            let scale = size as f32 / tree.size().width().max(tree.size().height());
            resvg::render(
                &tree,
                resvg::tiny_skia::Transform::from_scale(scale, scale),
                &mut pixmap.as_mut(),
            );
            let png = pixmap.encode_png().expect("a drawn icon encodes as PNG");
            std::fs::write(out.join(format!("icon-{size}.png")), png).expect("OUT_DIR is writable");
        }
    }
}
