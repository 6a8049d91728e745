// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "portout-relay",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "portout-relay", targets: ["portout-relay"])
    ],
    targets: [
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        .target(name: "CCurlShim", dependencies: ["CCurl"], linkerSettings: [.linkedLibrary("curl")]),
        .target(name: "CLinuxShim"),
        .target(name: "CCRC32C"),
        .target(name: "PortoutCore", dependencies: ["CLinuxShim"]),
        .target(name: "PortoutCrypto", dependencies: ["COpenSSL"]),
        .target(name: "PortoutHTTP", dependencies: ["PortoutCore", "CLinuxShim"]),
        .target(name: "PortoutJournal", dependencies: ["PortoutCore", "CCRC32C"]),
        .target(
            name: "PortoutDelivery",
            dependencies: ["PortoutCore", "PortoutCrypto", "PortoutJournal", "CCurl", "CCurlShim"]
        ),
        .target(
            name: "PortoutRelay",
            dependencies: ["PortoutCore", "PortoutCrypto", "PortoutHTTP", "PortoutJournal", "PortoutDelivery"]
        ),
        .executableTarget(name: "portout-relay", dependencies: ["PortoutRelay"]),
        .executableTarget(
            name: "portout-bench",
            dependencies: ["PortoutCore", "PortoutJournal", "PortoutRelay", "PortoutDelivery", "CCurl"]
        ),
        .target(
            name: "PortoutTestSupport",
            dependencies: ["PortoutCore", "PortoutHTTP"],
            path: "Tests/PortoutTestSupport"
        ),
        .testTarget(name: "PortoutCoreTests", dependencies: ["PortoutCore", "PortoutTestSupport"]),
        .testTarget(name: "PortoutCryptoTests", dependencies: ["PortoutCrypto"]),
        .testTarget(
            name: "PortoutHTTPTests",
            dependencies: ["PortoutHTTP", "PortoutTestSupport"],
            resources: [.copy("Data")]
        ),
        .testTarget(name: "PortoutJournalTests", dependencies: ["PortoutJournal", "CCRC32C", "PortoutTestSupport"]),
        .testTarget(
            name: "PortoutDeliveryTests",
            dependencies: ["PortoutDelivery", "PortoutTestSupport"]
        ),
        .testTarget(
            name: "PortoutRelayTests",
            dependencies: ["PortoutRelay", "PortoutTestSupport"],
            resources: [.copy("Data")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
