//! `herd token`: API tokens for `[[api.tokens]]`, which stores only their
//! SHA-256 digests.

use std::io::Read;
use std::process::ExitCode;

use clap::Subcommand;
use rand::RngExt;

use crate::api::auth::digest_of;

/// `herd token …`.
#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Make a random token (256 bits, hex) and print it with the config entry that accepts it.
    New {
        /// The role of the entry printed: admin, submit or read.
        #[arg(long, default_value = "submit", value_parser = ["admin", "submit", "read"])]
        role: String,
        /// The tenant of the entry printed.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// The label of the entry printed.
        #[arg(long, default_value = "client")]
        name: String,
    },
    /// Read a token on standard input and print its SHA-256 digest.
    Hash,
}

/// Runs a `herd token` command.
pub fn run(command: TokenCommand) -> ExitCode {
    match command {
        TokenCommand::New { role, tenant, name } => {
            if let Err(message) = herd_protocol::Tenant::parse(&tenant) {
                eprintln!("herd token new: --tenant: {message}");
                return ExitCode::from(2);
            }
            let bytes: [u8; 32] = rand::rng().random();
            let token = hex(&bytes);
            let digest = hex(&digest_of(&token));
            println!("token: {token}");
            println!();
            println!(
                "# give the token to the client (HERD_TOKEN for the CLI, `Authorization: Bearer` for HTTP);"
            );
            println!("# put this entry in every node's config file (it holds only the digest):");
            println!("[[api.tokens]]");
            println!("name = {name:?}");
            println!("sha256 = \"{digest}\"");
            println!("role = {role:?}");
            println!("tenant = {tenant:?}");
            ExitCode::SUCCESS
        }
        TokenCommand::Hash => {
            let mut token = String::new();
            if let Err(error) = std::io::stdin().read_to_string(&mut token) {
                eprintln!("herd token hash: cannot read the token on standard input: {error}");
                return ExitCode::FAILURE;
            }
            let token = token.trim();
            if token.is_empty() {
                eprintln!(
                    "herd token hash: standard input held no token; pipe one in: printf %s \"$TOKEN\" | herd token hash"
                );
                return ExitCode::from(2);
            }
            println!("{}", hex(&digest_of(token)));
            ExitCode::SUCCESS
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
