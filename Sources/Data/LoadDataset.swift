// Chooses the reader for a dataset kind and turns a missing dataset into an error that says
// where it was looked for and how to get it.
import NN
#if canImport(Glibc)
import Glibc
#endif

public enum DatasetKind: String, CaseIterable, Sendable {
    case fashionMNIST = "fashion-mnist", mnist, cifar10, synthetic

    /// Where the dataset is looked for when the config gives no root.
    public var defaultRoot: String {
        switch self {
        case .fashionMNIST: return "/usr/share/datasets/fashion-mnist"
        case .mnist: return "/usr/share/datasets/mnist"
        case .cifar10: return "/usr/share/datasets/cifar10"
        case .synthetic: return ""
        }
    }
}

extension DatasetKind {
    /// The folder a configured root means: the root itself, or `defaultRoot` when it is empty.
    public func root(_ configured: String) -> String { configured.isEmpty ? defaultRoot : configured }

    /// Side of the dataset's own (square) images; the synthetic set is generated at this side
    /// when no image size is asked for.
    public var nativeSide: Int { self == .cifar10 ? 32 : 28 }

    /// Image side after resizing to `imageSize` (0 = keep the native size).
    public func side(imageSize: Int) -> Int { imageSize > 0 ? imageSize : nativeSide }
}

public enum Split: String, Sendable { case train, test }

/// Loads one split of a dataset into memory. An empty `root` means `kind.defaultRoot`.
/// `syntheticCount`, `syntheticShape` (default: one channel, `nativeSide` square) and `numClasses`
/// apply to `.synthetic` only (the real datasets have 10 classes); `seed` drives the synthetic
/// images and labels.
public func loadDataset(kind: DatasetKind, root: String, split: Split, syntheticCount: Int = 1024,
                        syntheticShape: (c: Int, h: Int, w: Int)? = nil, numClasses: Int = 10,
                        seed: UInt64 = 0) throws -> ImageDataset {
    let root = kind.root(root)
    if kind != .synthetic && !directoryExists(root) && pathExists(root) {
        throw DatasetError("data.root \(root) is a file, not a folder: expected the folder holding the \(kind.rawValue) files")
    }
    switch kind {
    case .fashionMNIST, .mnist:
        return try loadIDX(kind: kind, root: root, split: split)
    case .cifar10:
        return try CIFAR10Format.load(root: root, split: split)
    case .synthetic:
        guard syntheticCount >= 0 else { throw DatasetError("synthetic dataset: count must be >= 0, got \(syntheticCount)") }
        guard numClasses > 0 else { throw DatasetError("synthetic dataset: numClasses must be positive, got \(numClasses)") }
        let shape = syntheticShape ?? (1, kind.nativeSide, kind.nativeSide)
        let (c, h, w) = shape
        guard c > 0, h > 0, w > 0 else { throw DatasetError("synthetic dataset: shape must be positive, got \(c)x\(h)x\(w)") }
        return SyntheticDataset.make(count: syntheticCount, shape: shape, numClasses: numClasses,
                                     seed: seed, split: split)
    }
}

private func loadIDX(kind: DatasetKind, root: String, split: Split) throws -> ImageDataset {
    let prefix = split == .train ? "train" : "t10k"
    let imagesBase = "\(root)/\(prefix)-images-idx3-ubyte"
    let labelsBase = "\(root)/\(prefix)-labels-idx1-ubyte"
    let title = kind == .fashionMNIST ? "Fashion-MNIST" : "MNIST"
    func missing(_ base: String) -> DatasetError {
        let how: String
        if kind == .fashionMNIST && root == DatasetKind.fashionMNIST.defaultRoot {
            how = "install it with: apt-get install -y dataset-fashion-mnist"
        } else if kind == .fashionMNIST {
            how = "install it with: apt-get install -y dataset-fashion-mnist (it goes to \(DatasetKind.fashionMNIST.defaultRoot)), or put the four IDX files there"
        } else {
            how = "put the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, gzipped or not) in \(root)"
        }
        let where_ = directoryExists(root) ? "" : " (the folder \(root) does not exist)"
        return DatasetError("\(title) not found: looked for \(base) and \(base).gz\(where_); \(how)")
    }
    guard let imagesPath = existingFile(imagesBase) else { throw missing(imagesBase) }
    guard let labelsPath = existingFile(labelsBase) else { throw missing(labelsBase) }
    return try IDXFormat.load(name: "\(kind.rawValue)-\(split)", imagesPath: imagesPath, labelsPath: labelsPath)
}

func pathExists(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0
}
