//! The system CSPRNG (aws-lc-rs), the only randomness source in Coffer.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use crate::Error;

pub fn fill(buf: &mut [u8]) -> Result<(), Error> {
    SystemRandom::new().fill(buf).map_err(|_| Error::Random)
}

pub fn bytes(n: usize) -> Result<Vec<u8>, Error> {
    let mut v = vec![0u8; n];
    fill(&mut v)?;
    Ok(v)
}
