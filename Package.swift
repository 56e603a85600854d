// swift-tools-version:6.0
// Data-parallel ResNet training over MPI with hand-written forward and backward passes.
import PackageDescription
import Foundation

// The Kernels module (this program's hottest SIMD loops) is built once per instruction set and
// NN picks the one the CPU runs (Sources/NN/Core/KernelSet.swift). The extra copies need
// `-target-cpu`, an unsafe flag: RESNET_PORTABLE_BUILD=1 leaves them out (the baseline alone), as it
// must be for a versioned dependency or a cross build (`#if arch` sees the host, not the target).
#if arch(x86_64)
// Each copy also gets a compilation condition naming its set, for the few loops whose register
// tiling differs by set (Sources/Kernels/PanelGemm.swift); the arithmetic is the same in every set.
let kernelBuilds: [(target: String, cpu: String, condition: String)] =
    ProcessInfo.processInfo.environment["RESNET_PORTABLE_BUILD"] == "1" ? [] :
    [("KernelsAVX2", "haswell", "KERNELS_AVX2"), ("KernelsAVX512", "skylake-avx512", "KERNELS_AVX512")]
#else
let kernelBuilds: [(target: String, cpu: String, condition: String)] = []
#endif

let package = Package(
    name: "resnet",
    products: [
        .executable(name: "resnet", targets: ["resnet"]),
        // The layers and model alone, and the whole trainer, for other Swift packages.
        .library(name: "ResNetModel", targets: ["NN"]),
        .library(name: "ResNetTraining", targets: ["Training", "Coordinator", "Distributed", "Data", "NN"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0"),
    ],
    targets: [
        // MARK: System libraries and the C shim
        // The only code that includes <mpi.h>; OpenMPI's handles are macros Swift cannot import.
        .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev"])]),
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),

        // MARK: Modules (each depends only on the ones above it)
        .target(name: "Trace"),   // the step timeline (--trace): layers, buckets and run loop record into it
        .target(name: "Kernels"),   // pure SIMD loops; Sources/KernelsAVX2 and KernelsAVX512 link to the same folder
        .target(name: "NN", dependencies: ["CBLAS", "Trace", "Kernels"] + kernelBuilds.map { .target(name: $0.target) },
                swiftSettings: kernelBuilds.isEmpty ? [] : [.define("RESNET_KERNEL_SETS")]),
        .target(name: "Data", dependencies: ["NN", "CZlib"]),
        .target(name: "Distributed", dependencies: ["CMPI", "Trace"]),
        // TensorBoard event files (messages generated once from proto/, committed; no protoc at build time).
        .target(name: "TensorBoard", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")]),
        .target(name: "Coordinator", dependencies: ["NN", "Data", "Distributed", "CZlib"]),
        .target(name: "Training",
                dependencies: ["NN", "Data", "Distributed", "Coordinator", "TensorBoard", "Trace", "Yams"]),
        .executableTarget(name: "resnet",
                          dependencies: ["Training", "Coordinator", "Distributed", "NN", "Data",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser")]),

        .executableTarget(name: "mpi-selftest", dependencies: ["Distributed"], path: "Sources/mpi-selftest"),
        // The library used directly in one process (README); CommandLineTests builds and runs it.
        .executableTarget(name: "single-process-example", dependencies: ["NN", "Data", "Training"]),

        // MARK: Tests
        // Fixtures shared by the test targets: numeric assertions, references, processes and mpirun.
        .target(name: "TestSupport", dependencies: ["NN"], path: "Sources/TestSupport"),
        // One target per module, in module order.
        .testTarget(name: "NNTests", dependencies: ["NN", "Trace", "TestSupport"]),
        .testTarget(name: "DataTests", dependencies: ["Data", "NN", "CZlib"]),
        .testTarget(name: "DistributedTests", dependencies: ["Distributed", "NN", "TestSupport"]),
        .testTarget(name: "CoordinatorTests", dependencies: ["Coordinator", "Distributed", "NN", "TestSupport"]),
        .testTarget(name: "TensorBoardTests", dependencies: ["TensorBoard", "TestSupport"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Coordinator", "Data", "NN", "Trace", "TestSupport"]),
        .testTarget(name: "TorchParityTests", dependencies: ["NN", "Training", "TestSupport"], exclude: ["torch"]),
        // Tests that launch the release `resnet` binary (and the example), alone and under mpirun.
        .testTarget(name: "CommandLineTests", dependencies: ["Coordinator", "NN", "TestSupport"]),
    ] + kernelBuilds.map { .target(name: $0.target, swiftSettings: [.unsafeFlags(["-target-cpu", $0.cpu]), .define($0.condition)]) },
    swiftLanguageModes: [.v5]
)
