import Foundation
import PortoutRelay

exit(RelayCommand.run(CommandLine.arguments))
