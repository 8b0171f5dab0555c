//! Message times in the viewer's own time zone and language.

/// Short time for the message list, e.g. "14:05" or "2:05 PM".
pub fn short_time(ms: i64) -> String {
    imp::short_time(ms)
}

/// Full date and time for the hover title.
pub fn full_date(ms: i64) -> String {
    imp::full_date(ms)
}

/// Machine-readable time for the `datetime` attribute.
pub fn iso(ms: i64) -> String {
    imp::iso(ms)
}

#[cfg(feature = "hydrate")]
mod imp {
    use js_sys::{Date, Object, Reflect};
    use wasm_bindgen::JsValue;

    fn date(ms: i64) -> Date {
        Date::new(&JsValue::from_f64(ms as f64))
    }

    pub fn short_time(ms: i64) -> String {
        let options = Object::new();
        let _ = Reflect::set(&options, &"hour".into(), &"2-digit".into());
        let _ = Reflect::set(&options, &"minute".into(), &"2-digit".into());
        date(ms)
            .to_locale_time_string_with_options("default", &options)
            .into()
    }

    pub fn full_date(ms: i64) -> String {
        let options = Object::new();
        let _ = Reflect::set(&options, &"dateStyle".into(), &"full".into());
        let _ = Reflect::set(&options, &"timeStyle".into(), &"medium".into());
        date(ms).to_locale_string("default", &options).into()
    }

    pub fn iso(ms: i64) -> String {
        let date = date(ms);
        // `toISOString` throws on a time outside JavaScript's dates.
        if date.get_time().is_nan() {
            return String::new();
        }
        date.to_iso_string().into()
    }
}

/// The server never renders messages (they arrive over the socket after hydration),
/// but the components compile for it too; UTC is the honest answer there.
#[cfg(not(feature = "hydrate"))]
mod imp {
    /// (year, month, day, hour, minute, second) in UTC.
    fn utc(ms: i64) -> (i64, i64, i64, i64, i64, i64) {
        let secs = ms.div_euclid(1000);
        let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        (
            year,
            month,
            day,
            day_secs / 3600,
            day_secs % 3600 / 60,
            day_secs % 60,
        )
    }

    pub fn short_time(ms: i64) -> String {
        let (_, _, _, h, m, _) = utc(ms);
        format!("{h:02}:{m:02}")
    }

    pub fn full_date(ms: i64) -> String {
        let (y, mo, d, h, mi, s) = utc(ms);
        format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
    }

    pub fn iso(ms: i64) -> String {
        let (y, mo, d, h, mi, s) = utc(ms);
        format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn utc_dates_are_civil() {
            assert_eq!(super::iso(0), "1970-01-01T00:00:00Z");
            // 2026-11-25T18:42:39Z
            assert_eq!(super::iso(1_795_632_159_000), "2026-11-25T18:42:39Z");
            assert_eq!(super::iso(951_782_400_000), "2000-02-29T00:00:00Z");
        }
    }
}
