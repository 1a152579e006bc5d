#include <iostream>

int main(int argc, char** argv) {
  std::cout << "saetraj " << SAETRAJ_VERSION << "\n";
  return 0;
}
