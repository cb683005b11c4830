// The names most tests use, declared once instead of at the top of every file.
#pragma once

#include <chrono>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <awaken/credentials/awaken_broker.hpp>
#include <awaken/credentials/oauth_client_credentials.hpp>
#include <awaken/error.hpp>
#include <awaken/redacted_string.hpp>
#include <awaken/spiffe/jwt_source.hpp>

#include "support/run.hpp"

using namespace std::chrono_literals;
using awaken::AwakenBroker;
using awaken::BrokerOptions;
using awaken::ClientAuthentication;
using awaken::credential_errc;
using awaken::CredentialMaterial;
using awaken::grpc_status;
using awaken::IssuedToken;
using awaken::OAuthClientCredentials;
using awaken::RedactedString;
using awaken::spiffe_errc;
using awaken::spiffe::JwtSource;
using awaken::spiffe::JwtSvid;
using awaken::spiffe::SpiffeId;
using awaken::spiffe::TrustDomain;
using awaken::test::run;
using Catch::Matchers::Contains;
using json = nlohmann::json;
using namespace awaken::test;  // NOLINT(google-build-using-namespace): the tests' own support
