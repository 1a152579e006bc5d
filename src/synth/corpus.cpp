#include "saetraj/synth/synth.h"

namespace saetraj::synth {

// Written for this project. It repeats the names, objects and sentence shapes of the reference prompt
// so that the small tokenizer learns whole-word tokens for them.
const std::string& demo_corpus() {
  static const std::string text =
      "The final correct answer: Max, Mark and Smith are in the empty dark room. Smith left. Mark gave "
      "flashlight to Max.\n"
      "Max, Mark and Smith walked into the old house. The room was dark and empty. Mark found a flashlight "
      "on the table and gave it to Smith. Smith gave the flashlight to Max, and Max turned it on.\n"
      "In the morning the room was not dark. Smith left the house early. Mark and Max stayed in the room and "
      "talked about the answer to the final question.\n"
      "The teacher asked for the correct answer. Max gave the answer first. Mark said the answer was wrong, "
      "and Smith said the final answer was correct.\n"
      "When the light went out, the room became dark again. Max looked for the flashlight. Mark had left it "
      "in the empty box by the door, so Smith gave him a candle instead.\n"
      "Anna gave the book to Ben. Ben gave the pen to Clara. Clara gave the key to David, and David opened "
      "the door of the empty room.\n"
      "The dark room was quiet. Nobody was in the room after Smith left, until Mark came back with the "
      "flashlight and gave it to Max.\n"
      "Questions and answers: who left the room? Smith left. Who gave the flashlight? Mark gave the "
      "flashlight. Who received it? Max received the flashlight from Mark.\n"
      "Numbers help too: 1, 2, 3, 10, 25, 100 and 2024 are written with digits; the room number was 42.\n"
      "A river runs through the valley, and the village by the river has a small school, a market and a "
      "library where people read books in the evening.\n"
      "The scientist measured the light in the dark room with a new instrument. The final result was "
      "correct, and the answer surprised everyone.\n"
      "Max, Mark and Smith are friends. They meet every week, play games, and talk about books, science "
      "and the strange empty house at the end of the street.\n";
  return text;
}

}  // namespace saetraj::synth
