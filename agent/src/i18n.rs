//! Every string a volunteer reads, in Dutch and in English, from one catalogue compiled in.
//!
//! The catalogue is a table of [`Key`]s declared with [`lapterop_words::catalogue!`]: each key carries its
//! English and its Dutch text side by side, so a key without both languages does not compile. Texts may
//! hold named placeholders (`{model}`) that [`Lang::fill`] replaces; the tests check that both languages
//! use the same placeholders and that no English text shows up on a Dutch screen. The words the donor's
//! page shows too (a disk's outcome, the verdict, the parts, "unknown", "not touched") are not here but
//! in the shared [`Word`] catalogue, and sizes read as [`lapterop_words::size`] says, so the screen and
//! the page agree. The site config picks the language ([`Lang::parse`]); the volunteer switches it at any
//! prompt with one key ([`SWITCH_KEY`]).

pub use lapterop_words::{Lang, Word};

/// The key a volunteer types at any prompt to switch between Dutch and English.
pub const SWITCH_KEY: &str = "l";

lapterop_words::catalogue! {
/// A volunteer-facing text.
pub enum Key {
    // Common prompts.
    SwitchHint => "Type L and Enter to switch to Nederlands.", "Typ L en Enter voor English.";
    PressEnter => "Press Enter to continue.", "Druk op Enter om verder te gaan.";
    Yes => "yes", "ja";
    No => "no", "nee";
    WhatToDo => "What to do", "Wat te doen";
    Code => "code", "code";

    // Pre-flight.
    PreflightTitle => "Checks before we start", "Controles vooraf";
    PreflightAllClear => "Nothing blocks the job.", "Niets houdt het werk tegen.";
    PreflightBlocked => "The job cannot start until the problems marked STOP are solved.",
        "Het werk kan pas beginnen als de problemen met STOP opgelost zijn.";
    SeverityStop => "STOP", "STOP";
    SeverityWarn => "NOTE", "LET OP";
    P01Found => "No internal disk found, but the disk controller runs in RAID / Intel RST / VMD mode ({controller}).",
        "Geen interne schijf gevonden, maar de schijfcontroller staat in RAID / Intel RST / VMD-modus ({controller}).";
    P01Do => "Restart, open the BIOS setup (often F2 or Del), set SATA / storage mode to AHCI and turn VMD off, then boot the stick again.",
        "Herstart, open de BIOS-instellingen (vaak F2 of Del), zet de SATA- / opslagmodus op AHCI en zet VMD uit, start dan opnieuw van de stick.";
    P02Found => "An eMMC / SD controller is present ({controller}) but no eMMC disk appeared: its driver is missing or did not start.",
        "Er is een eMMC- / SD-controller ({controller}) maar er verscheen geen eMMC-schijf: het stuurprogramma ontbreekt of startte niet.";
    P02Do => "Write down the laptop model and code LAP-P02 and give the laptop to the workshop lead; its built-in storage cannot be wiped with this stick.",
        "Noteer het laptopmodel en code LAP-P02 en geef de laptop aan de werkplaatsleider; de ingebouwde opslag kan met deze stick niet gewist worden.";
    P03Found => "Disk {disk} ({model}) is connected through a USB adapter: hidden areas cannot be checked through it.",
        "Schijf {disk} ({model}) hangt aan een USB-adapter: verborgen zones kunnen daardoor niet gecontroleerd worden.";
    P03Do => "If you can, build the disk into a laptop or connect it directly by SATA; otherwise the result will say the hidden areas were not checked.",
        "Bouw de schijf zo mogelijk in een laptop of sluit ze rechtstreeks via SATA aan; anders meldt het resultaat dat verborgen zones niet gecontroleerd zijn.";
    P04Found => "Disk {disk} ({model}) is frozen: it refuses the built-in erase command until it is woken again.",
        "Schijf {disk} ({model}) is bevroren: ze weigert het ingebouwde wiscommando tot ze opnieuw gewekt wordt.";
    P04Do => "Put the laptop to sleep (close the lid) for a few seconds and wake it, or unplug and replug a removable disk; otherwise the disk is overwritten instead.",
        "Zet de laptop even in slaap (klep dicht) en maak hem weer wakker, of koppel een losse schijf los en weer aan; anders wordt de schijf overschreven.";
    P05Found => "The clock says {clock}, which cannot be right.", "De klok zegt {clock}, dat kan niet kloppen.";
    P05Do => "Connect the network cable so the clock can be set, or set the date in the BIOS; certificates carry this time.",
        "Sluit de netwerkkabel aan zodat de klok gezet kan worden, of zet de datum in het BIOS; certificaten dragen dit tijdstip.";
    P06Found => "No network: no cable is in, or the laptop has no network adapter.",
        "Geen netwerk: er zit geen kabel in, of de laptop heeft geen netwerkadapter.";
    P06Do => "You can go on: certificates wait on the stick and are sent later. Plug in a network cable to send them now.",
        "U kunt verder: certificaten wachten op de stick en worden later verstuurd. Steek een netwerkkabel in om ze nu te versturen.";
    P10Found => "A network cable is in ({link}), but no address came yet (DHCP is still asking).",
        "Er zit een netwerkkabel in ({link}), maar er kwam nog geen adres (DHCP vraagt nog).";
    P10Do => "You can go on: the stick keeps asking and sends the certificates as soon as an address comes. If it never does, try another network socket or ask the workshop lead.",
        "U kunt verder: de stick blijft vragen en verstuurt de certificaten zodra er een adres is. Lukt het nooit, probeer dan een andere netwerkaansluiting of vraag het de werkplaatsleider.";
    P11Found => "The Wi-Fi network {ssid} refused the passphrase in the stick's site config.",
        "Het wifi-netwerk {ssid} weigert het wachtwoord uit de siteconfiguratie van de stick.";
    P11Do => "You can go on: certificates wait on the stick. Plug in a network cable, or ask the workshop lead to fix the Wi-Fi passphrase.",
        "U kunt verder: certificaten wachten op de stick. Steek een netwerkkabel in, of vraag de werkplaatsleider het wifi-wachtwoord te verbeteren.";
    P12Found => "No cable has an address; the stick is joining the Wi-Fi network {ssid} of its site config.",
        "Geen kabel met een adres; de stick maakt verbinding met het wifi-netwerk {ssid} uit de siteconfiguratie.";
    P12Do => "You can go on: the certificates are sent as soon as the Wi-Fi gives an address.",
        "U kunt verder: de certificaten worden verstuurd zodra de wifi een adres geeft.";
    P07Found => "The battery is at {percent}% and not charging.", "De batterij staat op {percent}% en laadt niet op.";
    P07Do => "Plug in the charger before the disk is wiped: a laptop that dies halfway leaves a disk half wiped.",
        "Sluit de lader aan voor de schijf gewist wordt: een laptop die halverwege uitvalt, laat een half gewiste schijf achter.";
    P08Found => "No internal disk found and no RAID or eMMC controller that could hide one.",
        "Geen interne schijf gevonden en geen RAID- of eMMC-controller die er een kan verbergen.";
    P08Do => "Check that a disk is fitted and its connector is seated; if the laptop has one, check the storage settings in the BIOS.",
        "Controleer of er een schijf in zit en de connector goed vastzit; als de laptop er een heeft, controleer de opslaginstellingen in het BIOS.";
    P09Found => "An SD card is in the card reader ({disk}, {size}); it is left alone.",
        "Er zit een SD-kaart in de kaartlezer ({disk}, {size}); ze blijft onaangeroerd.";
    P09Do => "Take it out and give it back with the laptop (the certificate lists it as not touched). If the donor wants it wiped, ask the lead: the site config can wipe cards too.",
        "Haal ze eruit en geef ze terug met de laptop (het certificaat vermeldt ze als niet aangeraakt). Wil de schenker ze gewist, vraag het de werkplaatsleider: de siteconfiguratie kan kaarten mee wissen.";

    // Audit.
    AuditTitle => "This laptop", "Deze laptop";
    AuditMachine => "Machine", "Toestel";
    AuditSerial => "Serial number", "Serienummer";
    AuditCpu => "Processor", "Processor";
    AuditMemory => "Memory", "Geheugen";
    AuditSlots => "{used} of {slots} slots used", "{used} van {slots} sleuven gebruikt";
    AuditDisks => "Disks", "Schijven";
    AuditBattery => "Battery", "Batterij";
    AuditBatteryHealth => "{percent}% of its original capacity", "{percent}% van de oorspronkelijke capaciteit";
    AuditNoBattery => "none found", "niet gevonden";
    AuditScreen => "Screen", "Scherm";
    AuditNetwork => "Network", "Netwerk";
    AuditGaps => "Could not be read (check by hand)", "Niet leesbaar (controleer met de hand)";
    AuditVerdict => "Verdict", "Oordeel";
    NetWired => "wired", "kabel";
    NetWireless => "wireless", "wifi";
    AuditNone => "none", "geen";

    // Plan and confirmation.
    PlanTitle => "Plan: these disks will be ERASED", "Plan: deze schijven worden GEWIST";
    PlanModel => "Model", "Model";
    PlanSerial => "Serial", "Serienummer";
    PlanSize => "Size", "Grootte";
    PlanHealth => "Health", "Gezondheid";
    PlanMethod => "Method", "Methode";
    PlanBootStick => "this is the boot stick", "dit is de opstartstick";
    PlanInUse => "in use (mounted or busy)", "in gebruik (aangekoppeld of bezet)";
    PlanReadOnly => "read-only", "alleen-lezen";
    PlanUsbBridge => "USB adapter: hidden areas not checkable", "USB-adapter: verborgen zones niet controleerbaar";
    PlanFrozen => "frozen", "bevroren";
    PlanNothing => "There is no disk to erase.", "Er is geen schijf om te wissen.";
    PlanExternal => "not an internal disk of this laptop (USB, removable or virtual)",
        "geen interne schijf van deze laptop (USB, verwisselbaar of virtueel)";
    PlanNotChosen => "not named for this run", "niet gekozen voor deze keer";
    MethodFirmwareThenOverwrite => "built-in erase ({firmware}), then overwrite and check every byte",
        "ingebouwd wissen ({firmware}), daarna overschrijven en elke byte controleren";
    MethodOverwrite => "overwrite and check every byte", "overschrijven en elke byte controleren";
    MethodAfterFailed => "{purge} (after {failed} failed)", "{purge} (nadat {failed} mislukte)";
    MethodPurgeThenOverwrite => "{purge}, then overwritten", "{purge}, daarna overschreven";
    MethodOverwritten => "overwritten", "overschreven";
    MethodNothingCompleted => "no erase completed", "geen wisbewerking voltooid";
    MethodFailedOnly => "{failed} failed", "{failed} mislukt";
    MethodEveryByte => "every byte checked", "elke byte gecontroleerd";
    MethodSampled => "checked by samples", "met steekproeven gecontroleerd";
    MethodNotChecked => "not read back", "niet teruggelezen";
    HealthGood => "good", "goed";
    HealthWorn => "worn ({detail})", "versleten ({detail})";
    HealthFailing => "FAILING ({detail})", "DEFECT ({detail})";
    ConfirmAsk => "To erase {disk}, type the last four characters of its serial number ({hint}), or Q to cancel:",
        "Om {disk} te wissen, typ de laatste vier tekens van het serienummer ({hint}), of Q om te annuleren:";
    ConfirmAskWord => "To erase {disk}, type the word {word}, or Q to cancel:",
        "Om {disk} te wissen, typ het woord {word}, of Q om te annuleren:";
    ConfirmWrong => "That does not match. Look at the serial number on the screen and try again.",
        "Dat klopt niet. Kijk naar het serienummer op het scherm en probeer opnieuw.";
    ConfirmWrongWord => "That does not match. Type the word shown above and try again.",
        "Dat klopt niet. Typ het woord dat hierboven staat en probeer opnieuw.";
    ConfirmOk => "Confirmed: {disk} will be erased.", "Bevestigd: {disk} wordt gewist.";
    Cancelled => "Cancelled. Nothing was erased.", "Geannuleerd. Er is niets gewist.";
    PsidAsk => "Disk {disk} ({model}) is a self-encrypting drive that its former owner locked: it cannot be erased as it is. This site allows resetting it with its PSID, which destroys everything on it. Type the 32 letters and digits printed after PSID on the drive's label, or press Enter to skip it:",
        "Schijf {disk} ({model}) is een zelfversleutelende schijf die de vorige eigenaar vergrendeld heeft: ze kan zo niet gewist worden. Deze site laat toe ze terug te zetten met haar PSID, wat alles erop vernietigt. Typ de 32 letters en cijfers na PSID op het etiket van de schijf, of druk op Enter om ze over te slaan:";
    PsidWrongLength => "That is {count} characters; a PSID has 32. Type it again exactly as on the label of {disk}, or press Enter to skip:",
        "Dat zijn {count} tekens; een PSID heeft er 32. Typ ze opnieuw precies zoals op het etiket van {disk}, of druk op Enter om over te slaan:";
    PsidWrongCharacters => "A PSID has only letters and digits. Type it again exactly as on the label of {disk}, or press Enter to skip:",
        "Een PSID heeft enkel letters en cijfers. Typ ze opnieuw precies zoals op het etiket van {disk}, of druk op Enter om over te slaan:";
    PsidTaken => "PSID noted for {disk}: after you confirm, the drive is reset to its factory state and then wiped.",
        "PSID genoteerd voor {disk}: na uw bevestiging wordt de schijf teruggezet naar fabrieksinstellingen en daarna gewist.";
    PsidSkipped => "No PSID: {disk} stays locked and cannot be erased. Give it to the workshop lead.",
        "Geen PSID: {disk} blijft vergrendeld en kan niet gewist worden. Geef ze aan de werkplaatsleider.";
    Countdown => "Erasing starts in {seconds} s. Press any key and Enter to stop.",
        "Het wissen begint over {seconds} s. Druk op een toets en Enter om te stoppen.";
    CountdownStart => "Starting now.", "We beginnen nu.";

    // Operator.
    OperatorAsk => "Your name or volunteer code:", "Uw naam of vrijwilligerscode:";
    OperatorEmpty => "Please type a name or a code.", "Typ een naam of een code.";
    VerifierAsk => "Second person who checks (four-eyes), or Enter to skip:",
        "Tweede persoon die controleert (vier ogen), of Enter om over te slaan:";
    VerifierSame => "The second person must be someone else.", "De tweede persoon moet iemand anders zijn.";

    // Progress.
    ProgressTitle => "Erasing", "Bezig met wissen";
    StepFirmware => "built-in erase", "ingebouwd wissen";
    StepOverwrite => "overwriting", "overschrijven";
    StepVerify => "checking", "controleren";
    StepInstall => "installing", "installeren";
    NoProgressReported => "the disk reports no progress", "de schijf meldt geen voortgang";
    Elapsed => "elapsed", "verstreken";
    Eta => "left", "resterend";

    // Result.
    ResultDisk => "Disk", "Schijf";
    ResultTitle => "Result", "Resultaat";
    ErasedDo => "Nothing to do for this disk.", "Niets te doen voor deze schijf.";
    ExceptionsDo => "The data is gone except where listed. Show this screen to the workshop lead before the laptop goes out.",
        "De gegevens zijn weg behalve waar vermeld. Toon dit scherm aan de werkplaatsleider voor de laptop vertrekt.";
    NotErasedDo => "Do NOT hand out this disk. Put a red sticker on the laptop and give it to the workshop lead.",
        "Geef deze schijf NIET mee. Kleef een rode sticker op de laptop en geef hem aan de werkplaatsleider.";
    Reason => "Why", "Waarom";
    InstallOk => "Standard software installed: {image}.", "Standaardsoftware geïnstalleerd: {image}.";
    InstallFailed => "Software NOT installed: {reason}.", "Software NIET geïnstalleerd: {reason}.";
    InstallSkipped => "No software installed (not asked for).", "Geen software geïnstalleerd (niet gevraagd).";
    UploadDone => "Certificate sent to the server and receipt kept.", "Certificaat naar de server gestuurd en ontvangstbewijs bewaard.";
    UploadWaiting => "Certificate saved on the stick; it will be sent when there is a network.",
        "Certificaat bewaard op de stick; het wordt verstuurd zodra er netwerk is.";
    UploadRefused => "The server refused the certificate: {reason}. It stays on the stick.",
        "De server weigerde het certificaat: {reason}. Het blijft op de stick.";
    UploadSending => "Sending the certificate to the server...", "Het certificaat wordt naar de server gestuurd...";
    CertificateSaved => "Certificate {id} saved on the stick.", "Certificaat {id} bewaard op de stick.";
    InstallingTitle => "Installing the standard software", "De standaardsoftware wordt geïnstalleerd";
    QrCaption => "Donor page (scan with a phone):", "Pagina voor de schenker (scan met een telefoon):";
    NextMachine => "Type N and Enter for the next laptop, or P and Enter to power off.",
        "Typ N en Enter voor de volgende laptop, of P en Enter om uit te schakelen.";

    // The network line under every screen.
    NetNone => "Network: none (no cable, no network adapter).", "Netwerk: geen (geen kabel, geen netwerkadapter).";
    NetCable => "Network: cable in ({link}), waiting for an address.", "Netwerk: kabel in ({link}), wacht op een adres.";
    NetConnected => "Network: connected on {link}, address {address}.", "Netwerk: verbonden via {link}, adres {address}.";
    NetWifiJoining => "Wi-Fi: joining {ssid}.", "Wifi: verbinden met {ssid}.";
    NetWifiConnected => "Wi-Fi: {ssid}, address {address}.", "Wifi: {ssid}, adres {address}.";
    NetWifiWrongKey => "Wi-Fi: {ssid} refused the passphrase (check [[network.wifi]] in site.toml).",
        "Wifi: {ssid} weigert het wachtwoord (controleer [[network.wifi]] in site.toml).";

    // Problems that stop the flow (codes in docs/lead-guide.md).
    S01Found => "The stick's station key cannot be used: {detail}", "De stationssleutel op de stick is niet bruikbaar: {detail}";
    S01Do => "Nothing was erased. Give the stick to the workshop lead: it needs its station key again.",
        "Er is niets gewist. Geef de stick aan de werkplaatsleider: de stationssleutel moet er opnieuw op.";
    S02Found => "The stick cannot be written: {detail}", "Er kan niet naar de stick geschreven worden: {detail}";
    S02Do => "Check that the stick is not full or write-protected, then start again. Give the laptop to the workshop lead if it happens again.",
        "Controleer of de stick niet vol of schrijfbeveiligd is en begin opnieuw. Geef de laptop aan de werkplaatsleider als het opnieuw gebeurt.";
    S03Found => "The job stopped: {detail}", "Het werk is gestopt: {detail}";
    S03Do => "Do NOT hand out this laptop: its disks may be half erased. Put a red sticker on it and give it to the workshop lead.",
        "Geef deze laptop NIET mee: de schijven kunnen half gewist zijn. Kleef een rode sticker op de laptop en geef hem aan de werkplaatsleider.";
}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Texts that are the same word in both languages.
    const SAME_IN_BOTH: &[Key] = &[Key::Code, Key::SeverityStop, Key::AuditCpu, Key::PlanModel];

    /// Every key has both languages by construction (the macro takes no key with one); this checks that
    /// both use the same placeholders and that no Dutch text is English.
    #[test]
    fn every_key_has_both_languages_with_the_same_placeholders_and_dutch_is_dutch() {
        let problems = lapterop_words::check(SAME_IN_BOTH);
        assert!(problems.is_empty(), "{problems:#?}");
        let shared = lapterop_words::check::<Word>(&[]);
        assert!(shared.is_empty(), "{shared:#?}");
    }

    #[test]
    fn every_part_the_audit_policy_names_has_a_shared_word() {
        for part in [
            "ram",
            "disk",
            "battery",
            "charger",
            "screen",
            crate::audit::policy::INSPECTION,
        ] {
            assert!(Word::part(part).is_some(), "{part} has no word");
        }
    }

    #[test]
    fn fill_replaces_every_placeholder() {
        let text = Lang::Nl.fill(Key::P07Found, &[("percent", "12")]);
        assert_eq!(text, "De batterij staat op 12% en laadt niet op.");
        let text = Lang::En.fill(Key::AuditSlots, &[("used", "1"), ("slots", "2")]);
        assert_eq!(text, "1 of 2 slots used");
    }
}
