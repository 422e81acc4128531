//! The certificate of the whole laptop: assembled once, signed with the station key and written
//! atomically into the outbox (with the full audit beside it) before any upload is tried.

use std::path::PathBuf;

use anyhow::Context;
use lapterop_certificate::{self as cert, Certificate, DiskRecord, InstallRecord, StationInfo};

use super::{Audited, People, Station};
use crate::site::Site;
use crate::wipe;

/// What the certificate covers: the disks considered (wiped and refused) and the ones left alone.
#[derive(Debug)]
pub struct Covered {
    /// Every disk considered, wiped or refused.
    pub disks: Vec<DiskRecord>,
    /// Disks left alone on purpose.
    pub not_touched: Vec<cert::UntouchedDisk>,
    /// The OS install.
    pub install: Option<InstallRecord>,
}

/// Signs the certificate of the laptop and stores it in the outbox; nothing is uploaded here.
pub fn certify_and_store(
    site: &Site,
    station: &Station,
    audited: &Audited,
    people: People,
    covered: Covered,
    id: String,
) -> anyhow::Result<(Certificate, PathBuf)> {
    let certificate = cert::Draft {
        agent: wipe::agent_info(station.binary_blake3.clone()),
        station: StationInfo {
            key_id: String::new(),
            organisation: site.station.organisation.clone(),
            site: site.station.site.clone(),
            name: site.station.name.clone(),
        },
        operator: people.0,
        verifier: people.1,
        donor: None,
        host: Some(audited.host.clone()),
        disks: covered.disks,
        not_touched: covered.not_touched,
        install: covered.install,
    }
    .sign(id, &station.key)
    .context("signing the certificate")?;
    let entry = station
        .outbox
        .store(&certificate, Some(&audited.json))
        .context("writing the certificate to the stick's outbox")?;
    Ok((certificate, entry.certificate))
}
