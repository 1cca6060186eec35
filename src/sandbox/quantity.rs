//! Kubernetes resource quantities (`1M`, `512Ki`, `1.5e6`, `250m`) as whole numbers.
//!
//! The grammar is apimachinery's: an optional sign, a decimal number, then one suffix — a
//! binary SI one (`Ki` … `Ei`), a decimal SI one (`n`, `u`, `m`, none, `k`, `M`, `G`, `T`, `P`,
//! `E`) or a decimal exponent (`e3`, `E-2`). Like `Quantity.Value()` the result is rounded up
//! to a whole number. Pod bandwidth annotations are the user here (`bandwidth.rs`); the whole
//! crates that parse quantities bring a decimal library and k8s-openapi for these few lines.

/// Why a quantity does not parse or does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// Not of the quantity grammar.
    #[error("{text:?} is not a quantity (a number with an optional suffix such as k, M, Gi, e3)")]
    Syntax {
        /// The text given.
        text: String,
    },
    /// Negative quantities have no meaning for the callers.
    #[error("{text:?} is negative")]
    Negative {
        /// The text given.
        text: String,
    },
    /// Larger than 2^128.
    #[error("{text:?} is too large")]
    TooLarge {
        /// The text given.
        text: String,
    },
}

/// The value of a non-negative quantity, rounded up to a whole number.
pub fn parse_whole(text: &str) -> Result<u128, QuantityError> {
    let syntax = || QuantityError::Syntax {
        text: text.to_owned(),
    };
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let number_len = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_len);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(syntax());
    }
    let scale = suffix_scale(suffix).ok_or_else(syntax)?;
    let too_large = || QuantityError::TooLarge {
        text: text.to_owned(),
    };
    // The digits as one integer, and how many of them are behind the point.
    let mut mantissa: u128 = 0;
    for digit in whole.bytes().chain(fraction.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(u128::from(digit - b'0')))
            .ok_or_else(too_large)?;
    }
    if negative && mantissa != 0 {
        return Err(QuantityError::Negative {
            text: text.to_owned(),
        });
    }
    let fraction_digits = i64::try_from(fraction.len()).map_err(|_| too_large())?;
    let value = match scale {
        Scale::Binary(shift) => {
            let scaled = mantissa.checked_shl(shift).ok_or_else(too_large)?;
            if scaled >> shift != mantissa {
                return Err(too_large());
            }
            divide_up(scaled, fraction_digits)
        }
        Scale::Decimal(exponent) => {
            let exponent = exponent - fraction_digits;
            if exponent >= 0 {
                let factor = u32::try_from(exponent)
                    .ok()
                    .and_then(|e| 10u128.checked_pow(e))
                    .ok_or_else(too_large)?;
                if mantissa == 0 {
                    0
                } else {
                    mantissa.checked_mul(factor).ok_or_else(too_large)?
                }
            } else {
                divide_up(mantissa, -exponent)
            }
        }
    };
    Ok(value)
}

/// How a suffix scales the number.
enum Scale {
    /// Multiply by `2^n`.
    Binary(u32),
    /// Multiply by `10^n`.
    Decimal(i64),
}

fn suffix_scale(suffix: &str) -> Option<Scale> {
    let scale = match suffix {
        "Ki" => Scale::Binary(10),
        "Mi" => Scale::Binary(20),
        "Gi" => Scale::Binary(30),
        "Ti" => Scale::Binary(40),
        "Pi" => Scale::Binary(50),
        "Ei" => Scale::Binary(60),
        "n" => Scale::Decimal(-9),
        "u" => Scale::Decimal(-6),
        "m" => Scale::Decimal(-3),
        "" => Scale::Decimal(0),
        "k" => Scale::Decimal(3),
        "M" => Scale::Decimal(6),
        "G" => Scale::Decimal(9),
        "T" => Scale::Decimal(12),
        "P" => Scale::Decimal(15),
        "E" => Scale::Decimal(18),
        _ => {
            // A decimal exponent: `e`/`E` then a signed integer.
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            Scale::Decimal(exponent.parse().ok()?)
        }
    };
    Some(scale)
}

/// `value / 10^digits`, rounded up.
fn divide_up(value: u128, digits: i64) -> u128 {
    match u32::try_from(digits)
        .ok()
        .and_then(|d| 10u128.checked_pow(d))
    {
        Some(divisor) => value.div_ceil(divisor),
        // A divisor beyond u128: any non-zero value rounds up to 1.
        None => u128::from(value != 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantity_suffixes_and_rounding() {
        for (text, value) in [
            ("0", 0),
            ("1", 1),
            ("+7", 7),
            ("-0", 0),
            ("1k", 1_000),
            ("1M", 1_000_000),
            ("2.5M", 2_500_000),
            ("10G", 10_000_000_000),
            ("1P", 1_000_000_000_000_000),
            ("1E", 1_000_000_000_000_000_000),
            ("1Ki", 1_024),
            ("1.5Mi", 1_572_864),
            ("3Gi", 3 << 30),
            ("1e3", 1_000),
            ("1E6", 1_000_000),
            ("12e-1", 2),
            ("1.5", 2),
            (".5k", 500),
            ("5.", 5),
            ("100m", 1),
            ("1000m", 1),
            ("1001m", 2),
            ("1n", 1),
            ("0.0001u", 1),
            ("1e-100", 1),
        ] {
            assert_eq!(parse_whole(text), Ok(value), "{text}");
        }
    }

    #[test]
    fn quantity_rejects_what_apimachinery_rejects() {
        for text in [
            "", "k", ".", "1.2.3", "1 M", " 1M", "1Mb", "1mi", "1KiB", "1e", "1e+", "1e3.5", "1..",
            "abc", "0x10", "1E1k",
        ] {
            assert!(
                matches!(parse_whole(text), Err(QuantityError::Syntax { .. })),
                "{text}: {:?}",
                parse_whole(text)
            );
        }
        assert!(matches!(
            parse_whole("-1M"),
            Err(QuantityError::Negative { .. })
        ));
        assert!(matches!(
            parse_whole("1e50"),
            Err(QuantityError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_whole("999999999999999999999999999999999999999999"),
            Err(QuantityError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_whole("1000000000000000000000Ei"),
            Err(QuantityError::TooLarge { .. })
        ));
    }
}
