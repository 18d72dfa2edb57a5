#!/usr/bin/env python3
"""sslyze's Mozilla profile check for a listener that requires a client
certificate (Kontor's device API), through sslyze's Python API.

`sslyze --mozilla_config=intermediate` cannot give a verdict there:

- without a client certificate, the session renegotiation scan cannot
  complete a handshake ("Client certificated required for --reneg"), and
  the checker refuses an incomplete scan;
- with one (--cert/--key), the SSL 2.0 scan cannot even start: sslyze's
  legacy OpenSSL 1.0.2 client refuses to load an ECDSA client certificate
  into an SSLv2 context (SSLv2 knows only RSA), and Kontor's device
  certificates are P-256.

So this runs the same scan commands the CLI queues for the profile
(SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER) with the device certificate,
except SSL 2.0, which it runs without a certificate (whether a server
speaks SSLv2 is decided by its first answer, long before it could ask for
a certificate), puts the two together and hands them to the CLI's own
checker, check_server_against_tls_configuration, against the same
profile. Prints the criteria that fail and exits 1 on any.

Usage: sslyze_mtls.py HOST PORT IP CA_PEM CLIENT_CHAIN_PEM CLIENT_KEY_PEM
"""

import dataclasses
import sys
from pathlib import Path

from sslyze import (
    CertificateInfoExtraArgument,
    ClientAuthenticationCredentials,
    ScanCommand,
    ScanCommandAttemptStatusEnum,
    ScanCommandsExtraArguments,
    Scanner,
    ServerNetworkConfiguration,
    ServerNetworkLocation,
    ServerScanRequest,
    ServerScanStatusEnum,
)
from sslyze.mozilla_tls_profile.tls_config_checker import (
    SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER,
    MozillaTlsConfiguration,
    ServerNotCompliantWithTlsConfiguration,
    ServerScanResultIncomplete,
    TlsConfigurationEnum,
    check_server_against_tls_configuration,
)


def scan(location, network, commands, ca):
    scanner = Scanner()
    scanner.queue_scans(
        [
            ServerScanRequest(
                server_location=location,
                network_configuration=network,
                scan_commands=commands,
                scan_commands_extra_arguments=ScanCommandsExtraArguments(
                    certificate_info=CertificateInfoExtraArgument(custom_ca_file=ca)
                    if ScanCommand.CERTIFICATE_INFO in commands
                    else None
                ),
            )
        ]
    )
    (result,) = list(scanner.get_results())
    if result.scan_status != ServerScanStatusEnum.COMPLETED:
        sys.exit(f"sslyze could not scan {location.hostname}:{location.port}: {result.connectivity_error_trace}")
    for command in commands:
        attempt = getattr(result.scan_result, command.value)
        if attempt.status != ScanCommandAttemptStatusEnum.COMPLETED:
            sys.exit(f"sslyze's {command.value} scan did not complete: {attempt.error_trace}")
    return result


def main():
    host, port, ip, ca, chain, key = sys.argv[1:7]
    location = ServerNetworkLocation(hostname=host, port=int(port), ip_address=ip)
    with_cert = ServerNetworkConfiguration(
        tls_server_name_indication=host,
        tls_client_auth_credentials=ClientAuthenticationCredentials(
            certificate_chain_path=Path(chain), key_path=Path(key)
        ),
    )
    without_cert = ServerNetworkConfiguration(tls_server_name_indication=host)
    sslv2 = ScanCommand.SSL_2_0_CIPHER_SUITES
    main_result = scan(location, with_cert, SCAN_COMMANDS_NEEDED_BY_MOZILLA_CHECKER - {sslv2}, Path(ca))
    sslv2_result = scan(location, without_cert, {sslv2}, Path(ca))
    merged = dataclasses.replace(
        main_result,
        scan_result=dataclasses.replace(
            main_result.scan_result,
            ssl_2_0_cipher_suites=sslv2_result.scan_result.ssl_2_0_cipher_suites,
        ),
    )
    for field, name in [
        ("ssl_2_0_cipher_suites", "SSL 2.0"),
        ("ssl_3_0_cipher_suites", "SSL 3.0"),
        ("tls_1_0_cipher_suites", "TLS 1.0"),
        ("tls_1_1_cipher_suites", "TLS 1.1"),
        ("tls_1_2_cipher_suites", "TLS 1.2"),
        ("tls_1_3_cipher_suites", "TLS 1.3"),
    ]:
        accepted = getattr(merged.scan_result, field).result.accepted_cipher_suites
        print(f"    {name}: {', '.join(c.cipher_suite.name for c in accepted) or 'not offered'}")
    curves = merged.scan_result.elliptic_curves.result.supported_curves or []
    print(f"    curves: {', '.join(c.name for c in curves)}")
    profile = MozillaTlsConfiguration.get(TlsConfigurationEnum.MOZILLA_INTERMEDIATE)
    # The same words as the CLI's report, for scripts/tls_scan.sh.
    print(" COMPLIANCE AGAINST TLS CONFIGURATION")
    print('    Checking results against Mozilla\'s "intermediate" configuration (sslyze\'s checker, with a device certificate).')
    try:
        check_server_against_tls_configuration(merged, profile)
    except ServerNotCompliantWithTlsConfiguration as e:
        print(f"    {host}:{port}: FAILED - Not compliant.")
        for criterion, why in e.issues.items():
            print(f"        * {criterion}: {why}")
        sys.exit(1)
    except ServerScanResultIncomplete as e:
        print(f"    {host}:{port}: ERROR - {e}")
        sys.exit(1)
    print(f"    {host}:{port}: OK - Compliant.")


if __name__ == "__main__":
    main()
