//! Cutting the link between two local node processes, and only that one.

use std::collections::HashMap;
use std::process::Command;

/// Drops every packet of the established TCP connections between two local
/// processes (iptables rules on their exact address and port pairs),
/// leaving all their other connections alone: a silent cut of one link —
/// no reset, packets just vanish — as a broken route between two hosts
/// would make. [`LinkCut::heal`] (or drop) removes the rules. Needs root and
/// `iptables` and `ss`.
pub struct LinkCut {
    rules: Vec<Vec<String>>,
}

impl LinkCut {
    /// Cuts the connections between processes `a` and `b`, or says why it
    /// cannot (not root, no tools, no connection between them).
    pub fn between(a: u32, b: u32) -> Result<LinkCut, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("cutting one link with iptables needs root".into());
        }
        let pairs = connections_between(a, b)?;
        if pairs.is_empty() {
            return Err(format!("no TCP connection between processes {a} and {b}"));
        }
        let mut cut = LinkCut { rules: Vec::new() };
        for (one, other) in pairs {
            for (from, to) in [(&one, &other), (&other, &one)] {
                let rule = vec![
                    "INPUT".to_string(),
                    "-p".into(),
                    "tcp".into(),
                    "-s".into(),
                    from.0.clone(),
                    "--sport".into(),
                    from.1.clone(),
                    "-d".into(),
                    to.0.clone(),
                    "--dport".into(),
                    to.1.clone(),
                    "-j".into(),
                    "DROP".into(),
                ];
                iptables("-I", &rule)?;
                cut.rules.push(rule);
            }
        }
        Ok(cut)
    }

    /// Restores the link.
    pub fn heal(&mut self) {
        for rule in self.rules.drain(..) {
            let _ = iptables("-D", &rule);
        }
    }
}

impl Drop for LinkCut {
    fn drop(&mut self) {
        self.heal();
    }
}

/// An endpoint: address and port, as text.
type Endpoint = (String, String);

/// The established connections with one end in process `a` and the other
/// in process `b`, from `ss`.
fn connections_between(a: u32, b: u32) -> Result<Vec<(Endpoint, Endpoint)>, String> {
    let output = Command::new("ss")
        .args(["-tnpH", "state", "established"])
        .output()
        .map_err(|error| format!("cannot run ss: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "ss failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    // Columns: Recv-Q Send-Q Local Peer Process.
    let sockets: Vec<(String, String, Vec<u32>)> = text
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, peer) = (fields.get(2)?, fields.get(3)?);
            let pids = line
                .split("pid=")
                .skip(1)
                .filter_map(|rest| rest.split(',').next()?.parse().ok())
                .collect();
            Some((local.to_string(), peer.to_string(), pids))
        })
        .collect();
    let owner: HashMap<&str, &Vec<u32>> = sockets
        .iter()
        .map(|(local, _, pids)| (local.as_str(), pids))
        .collect();
    let split = |address: &str| -> Option<Endpoint> {
        let (host, port) = address.rsplit_once(':')?;
        Some((host.to_string(), port.to_string()))
    };
    Ok(sockets
        .iter()
        .filter(|(_, peer, pids)| {
            pids.contains(&a) && owner.get(peer.as_str()).is_some_and(|p| p.contains(&b))
        })
        .filter_map(|(local, peer, _)| Some((split(local)?, split(peer)?)))
        .collect())
}

fn iptables(action: &str, rule: &[String]) -> Result<(), String> {
    let output = Command::new("iptables")
        .arg("-w")
        .arg(action)
        .args(rule)
        .output()
        .map_err(|error| format!("cannot run iptables: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "iptables {action} {}: {}",
            rule.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
