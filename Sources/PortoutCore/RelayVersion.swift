public enum RelayVersion {
    public static let current = "0.1.0"
}
