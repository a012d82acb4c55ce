//! Range checks of numbers that only the config file sets.

use std::fmt::Display;
use std::ops::RangeInclusive;

use crate::error::ConfigError;
use crate::file::LoadedFile;
use crate::origin::Origin;

/// Checks an optional number from the file against a range: the error names
/// the key, where it came from, the range and what the key is for. (NaN is
/// outside every range, and so are the infinities of a finite one.)
pub(crate) fn file_in_range<T: PartialOrd + Display>(
    file: Option<&LoadedFile>,
    key: &str,
    value: Option<T>,
    range: RangeInclusive<T>,
    meaning: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<T> {
    let value = value?;
    if range.contains(&value) {
        Some(value)
    } else {
        let origin = file.map(|f| f.origin_of(key)).unwrap_or(Origin::Default);
        errors.push(ConfigError::new(
            origin,
            key,
            format!(
                "is {value}, outside {}..={}; {meaning}",
                range.start(),
                range.end()
            ),
        ));
        None
    }
}

/// [`file_in_range`] for a whole number (the file's integers are `i64`).
pub(crate) fn file_integer(
    file: Option<&LoadedFile>,
    key: &str,
    value: Option<i64>,
    range: RangeInclusive<i64>,
    meaning: &str,
    errors: &mut Vec<ConfigError>,
) -> Option<i64> {
    file_in_range(file, key, value, range, meaning, errors)
}

/// One of herd-protocol's limits as the `i64` range a file integer is checked
/// against. (A bound beyond `i64` would become `i64::MAX`; none is.)
pub(crate) fn as_file_range<T: Copy + TryInto<i64>>(
    range: RangeInclusive<T>,
) -> RangeInclusive<i64> {
    let widen = |bound: T| bound.try_into().unwrap_or(i64::MAX);
    widen(*range.start())..=widen(*range.end())
}
