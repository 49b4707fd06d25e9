//! Reads a DLL's PE header, so a wrong file is refused now instead of IIS failing later with
//! 0x800700c1 (a 32/64-bit mismatch) or "bad module".

use crate::config::Bitness;

const IMAGE_FILE_MACHINE_I386: u16 = 0x014c;
const IMAGE_FILE_MACHINE_AMD64: u16 = 0x8664;
const IMAGE_FILE_MACHINE_ARM64: u16 = 0xaa64;
const IMAGE_FILE_DLL: u16 = 0x2000;

/// Ok when `image` is a DLL for the pool's bitness; otherwise why not.
pub(super) fn check(image: &[u8], bitness: Bitness) -> Result<(), String> {
    if image.get(..2) != Some(b"MZ".as_slice()) {
        return Err("not a Windows DLL (no MZ header)".into());
    }
    let pe = u32_at(image, 0x3c)
        .and_then(|off| usize::try_from(off).ok())
        .filter(|&off| image.get(off..off.saturating_add(4)) == Some(b"PE\0\0".as_slice()))
        .ok_or("not a Windows DLL (no PE header)")?;
    // COFF header after the signature: Machine at +0, Characteristics at +18.
    let machine = u16_at(image, pe + 4).ok_or("truncated PE header")?;
    let characteristics = u16_at(image, pe + 4 + 18).ok_or("truncated PE header")?;
    if characteristics & IMAGE_FILE_DLL == 0 {
        return Err("a program, not a DLL (give the ISAPI loader: wsgi_gateway_isapi.dll)".into());
    }
    let found = match machine {
        IMAGE_FILE_MACHINE_AMD64 => Bitness::Bits64,
        IMAGE_FILE_MACHINE_I386 => Bitness::Bits32,
        IMAGE_FILE_MACHINE_ARM64 => return Err("an ARM64 DLL; IIS pools run x64 or x86".into()),
        other => {
            return Err(format!(
                "a DLL for machine type {other:#06x}, not x64 or x86"
            ))
        }
    };
    if found != bitness {
        let (dll, pool) = match found {
            Bitness::Bits64 => ("64", "32"),
            Bitness::Bits32 => ("32", "64"),
        };
        return Err(format!(
            "a {dll}-bit DLL, but --bitness is {pool} (IIS would fail with 0x800700c1)"
        ));
    }
    Ok(())
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(machine: u16, characteristics: u16) -> Vec<u8> {
        let mut b = vec![0u8; 0x80];
        b[..2].copy_from_slice(b"MZ");
        b[0x3c..0x40].copy_from_slice(&0x40u32.to_le_bytes());
        b[0x40..0x44].copy_from_slice(b"PE\0\0");
        b[0x44..0x46].copy_from_slice(&machine.to_le_bytes());
        b[0x56..0x58].copy_from_slice(&characteristics.to_le_bytes());
        b
    }

    #[test]
    fn bitness_must_match() {
        assert!(check(&image(0x8664, 0x2022), Bitness::Bits64).is_ok());
        assert!(check(&image(0x014c, 0x2102), Bitness::Bits32).is_ok());
        let e = check(&image(0x014c, 0x2102), Bitness::Bits64).unwrap_err();
        assert!(e.contains("32-bit DLL"), "{e}");
    }

    #[test]
    fn refuses_what_is_not_a_dll() {
        assert!(check(b"\x7fELF", Bitness::Bits64)
            .unwrap_err()
            .contains("MZ"));
        assert!(check(b"MZ", Bitness::Bits64).unwrap_err().contains("PE"));
        let mut far = image(0x8664, 0x2022);
        far[0x3c..0x40].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(check(&far, Bitness::Bits64).is_err());
        let exe = check(&image(0x8664, 0x0022), Bitness::Bits64).unwrap_err();
        assert!(exe.contains("not a DLL"), "{exe}");
        let mut cut = image(0x8664, 0x2022);
        cut.truncate(0x50);
        assert!(check(&cut, Bitness::Bits64)
            .unwrap_err()
            .contains("truncated"));
    }
}
