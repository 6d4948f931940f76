/// The toolkit's version, written into every HDF5 file and printed by `bmlab doctor`.
public enum BMLab {
    public static let version = "0.1.0"
}
